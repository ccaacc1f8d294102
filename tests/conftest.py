"""Shared fixtures: synthetic audio (no hardware, no network) and a real CLI runner."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def require_asr() -> None:
    """Skip without PocketSphinx (the [asr] extra), with the reason; in CI
    (STREAMCLI_REQUIRE_ASR=1, where .ci/run installed it) that is a failure instead."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        if os.environ.get("STREAMCLI_REQUIRE_ASR"):
            pytest.fail("PocketSphinx is required here (STREAMCLI_REQUIRE_ASR) but not installed")
        pytest.skip(
            "the [asr] extra is not installed (pip install 'streamcli[asr]')",
            allow_module_level=True,
        )


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(
    rate: int, bursts: list[float], pause: float = 0.6, freq: float = 300.0
) -> np.ndarray:
    """Voiced bursts (tones) separated by silences: the emulators segment on these pauses."""
    parts = [np.zeros(int(0.2 * rate), np.float32)]
    for seconds in bursts:
        parts += [tone(freq, seconds, rate), np.zeros(int(pause * rate), np.float32)]
    parts.append(np.zeros(int(0.6 * rate), np.float32))
    return np.concatenate(parts)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture
def make_wav(tmp_path: Path):
    def make(
        name: str, data: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str | None = None
    ) -> Path:
        path = tmp_path / name
        sf.write(str(path), data, rate, subtype=subtype, format=fmt)
        return path

    return make


@pytest.fixture
def speech_wav(make_wav) -> Path:
    """Two voiced bursts at 22.05 kHz (so the client must resample to 16 kHz)."""
    return make_wav("speech.wav", speechlike(22050, [0.8, 1.0]), 22050)


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "script.txt"
    path.write_text("Hello streaming world.\nThe second sentence ends here.\n", encoding="utf-8")
    return path


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]


CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("MELVIN_", "PHEBI_", "BODHI_", "VERIDAS_", "STREAMCLI_"))
}


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 60.0
) -> Result:
    """Run the real CLI in a subprocess (the event loop keeps serving in-process emulators)."""
    full_env = {**CLEAN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent-streamcli-test"}
    full_env.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamcli",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=timeout)
    return Result(proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture
def cli():
    return run_cli
