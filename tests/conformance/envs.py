"""Throwaway, cached environments for the real servers (a venv per server, npm for AudioHook).

Each environment lives under ``$STREAMCLI_CONFORMANCE_CACHE`` (default
``~/.cache/streamcli-conformance``) in a folder named after a hash of what it installs, so a
second run reuses it and a changed pin builds a new one. A failing install raises: a broken
set-up is a test failure, never a skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVERS_DIR = Path(__file__).resolve().parent / "servers"


def real_servers_dir() -> Path:
    """``shared/real-servers`` beside the checkout (or ``$STREAMCLI_REAL_SERVERS``)."""
    env = os.environ.get("STREAMCLI_REAL_SERVERS")
    return Path(env) if env else REPO.parent / "shared" / "real-servers"


def cache_dir() -> Path:
    env = os.environ.get("STREAMCLI_CONFORMANCE_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "streamcli-conformance"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")


def python_env(name: str, requirements: list[str]) -> Path:
    """A venv with exactly these pinned requirements; returns its python executable."""
    target = cache_dir() / f"{name}-{_key(sys.version, *requirements)}"
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    shutil.rmtree(target, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(target)])
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements])
    (target / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def node_env(name: str, packages: list[str]) -> Path:
    """A folder with these npm packages installed; returns the folder (``node_modules`` inside)."""
    target = cache_dir() / f"{name}-{_key(*packages)}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    (target / "package.json").write_text('{"name": "streamcli-conformance", "private": true}\n')
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the AudioHook reference server needs Node 20")
    _run([npm, "install", "--no-audit", "--no-fund", "--silent", *packages], cwd=target)
    (target / ".complete").write_text("\n".join(packages) + "\n")
    return target


# What each real server pins (shared/real-servers/README.md). faster-whisper, torch, transformers
# and langchain are stubbed by the runners: only the model is replaced, and the REST app never
# calls the translation libraries it imports.
MELVIN_REQUIREMENTS = [
    "fastapi==0.115.11",
    "uvicorn==0.34.0",
    "websockets==15.0.1",
    "pydub==0.25.1",
    "numpy<2",
    "pyyaml",
    "python-multipart==0.0.20",
]
# asr_server.py's handler takes (websocket, path): websockets dropped that call style in 13.
VOSK_REQUIREMENTS = ["websockets==12.0"]
# pipecat's telephony runner as a real Twilio Media Streams consumer (the "pipecat 1.14").
PIPECAT_REQUIREMENTS = ["pipecat-ai==1.14.0", "fastapi==0.165.0", "uvicorn==0.54.0"]
AUDIOHOOK_PACKAGES = [
    "typescript@4.9.5",
    "ts-node@10.9.1",
    "@types/node@20",
    "uuid@8.3.2",
    "@types/uuid@8",
    "ws@8",
    "@types/ws@8",
]
