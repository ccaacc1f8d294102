"""Fixtures that start the real servers (shared/real-servers) in their own environments.

Only the speech model is replaced (servers/*: deterministic stand-ins that hear the coded words
of ``servers/coded_words.py``). Everything here skips, with the reason, only when
``shared/real-servers`` is absent; a set-up that fails is a test failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .envs import SERVERS_DIR, real_servers_dir


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.conformance)


@pytest.fixture(scope="session")
def real_servers() -> Path:
    path = real_servers_dir()
    if not path.is_dir():
        pytest.skip(
            f"no real server code at {path} (shared/real-servers is not beside the checkout)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A real server in a subprocess; its output goes to ``log_path``."""

    name: str
    proc: subprocess.Popen
    port: int
    log_path: Path

    @classmethod
    def start(
        cls, name: str, cmd: list[str], port: int, cwd: Path, env: dict[str, str] | None = None
    ) -> ServerProcess:
        log_path = cwd / f"{name}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        server = cls(name, proc, port, log_path)
        server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not listen on {self.port} in {timeout} s:\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class MelvinServer:
    version: str
    auth: bool
    key: str
    workdir: Path
    ws: ServerProcess
    rest: ServerProcess

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest.port}"

    def received(self, export_id: str) -> bytes:
        """The bytes the real handler received in the session that got this export id."""
        return (self.workdir / "received" / f"{export_id}.raw").read_bytes()

    def stop(self) -> None:
        self.ws.stop()
        self.rest.stop()


MELVIN_CONFIG = """\
log_level: DEBUG
host: "127.0.0.1"
api_keys: ["{key}"]
transcription_default: {{vad_filter: True, condition_on_previous_text: False}}
websocket_stream:
  cpu: {{active: True, model: tiny, cpu_threads: 1, worker_seats: {seats},
         transcription_mode: default}}
  cuda: {{active: False, model: tiny, device_index: 0, worker_seats: 1,
          transcription_mode: default}}
rest_runner:
  - {{device: cpu, transcription_enabled: False, models: [tiny], compute_type: int8,
      device_index: 0, num_workers: 1, cpu_threads: 1, translation_enabled: False,
      translation_model: none, translation_device: cpu}}
"""


def start_melvin(
    real_servers: Path, python: Path, version: str, workdir: Path, seats: int
) -> MelvinServer:
    root = real_servers / f"melvin-asr-{version}"
    workdir.mkdir(parents=True, exist_ok=True)
    key = "conformance-key-0123456789"
    (workdir / "config.local.yml").write_text(MELVIN_CONFIG.format(key=key, seats=seats))
    runner = str(SERVERS_DIR / "melvin_standin.py")
    ws_port, rest_port = free_port(), free_port()
    ws = ServerProcess.start(
        "melvin-ws", [str(python), runner, str(root), str(workdir), "ws", str(ws_port)],
        ws_port, workdir,
    )  # fmt: skip
    try:
        rest = ServerProcess.start(
            "melvin-rest", [str(python), runner, str(root), str(workdir), "rest", str(rest_port)],
            rest_port, workdir,
        )  # fmt: skip
    except BaseException:
        ws.stop()
        raise
    auth = "authenticate_new_client" in (root / "src/websocket/websockets_server.py").read_text()
    return MelvinServer(version, auth, key, workdir, ws, rest)


@pytest.fixture(scope="session")
def melvin_python(real_servers: Path) -> Path:
    from .envs import MELVIN_REQUIREMENTS, python_env

    return python_env("melvin", MELVIN_REQUIREMENTS)


@pytest.fixture(scope="session")
def vosk_python(real_servers: Path) -> Path:
    from .envs import VOSK_REQUIREMENTS, python_env

    return python_env("vosk", VOSK_REQUIREMENTS)
