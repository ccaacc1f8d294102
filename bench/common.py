"""Shared pieces of the benchmarks: test audio, a recording WebSocket server, process figures.

Only the standard library and the project (with its own dependencies) are used. The recording
server runs in a thread with its own event loop, so the benchmark's main thread can start and
time ``streamcli`` subprocesses while the server timestamps every frame it receives.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from pathlib import Path

PY = sys.executable
CACHE = Path(tempfile.gettempdir()) / "streamcli-bench"


def streamcli_command() -> list[str]:
    """The installed console script next to this interpreter (not a pyenv shim)."""
    script = shutil.which("streamcli", path=os.path.dirname(PY))
    return [script] if script else [PY, "-m", "streamcli"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}, "
        f"{os.uname().sysname} {os.uname().release}"
    )


# ---- audio --------------------------------------------------------------------------------------
def speech_like_wav(
    seconds: float, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16"
) -> Path:
    """A cached WAV of 1.6 s tone bursts and 0.6 s pauses (the emulators segment on pauses).

    Written block by block, so making a 20-minute file does not need 20 minutes in memory.
    """
    import numpy as np
    import soundfile as sf

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"speech-{seconds:g}s-{rate}-{channels}ch-{subtype}.wav"
    if path.exists():
        return path
    tmp = path.with_suffix(".part")
    period, voiced = 2.2, 1.6
    block = rate * 10
    total = int(seconds * rate)
    with sf.SoundFile(str(tmp), "w", rate, channels, subtype=subtype, format="WAV") as f:
        for start in range(0, total, block):
            t = np.arange(start, min(total, start + block)) / rate
            gate = (t % period) < voiced
            x = (0.4 * np.sin(2 * np.pi * 300.0 * t) * gate).astype(np.float32)
            f.write(np.repeat(x[:, None], channels, axis=1) if channels > 1 else x)
    tmp.rename(path)
    return path


def script_file() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "script.txt"
    path.write_text("Hello streaming world.\nThe second sentence ends here.\n", encoding="utf-8")
    return path


# ---- statistics ---------------------------------------------------------------------------------
def quantile(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[max(0, math.ceil(q * len(data)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---- a recording WebSocket server ---------------------------------------------------------------
@dataclass
class Connection:
    path: str
    arrivals: array = field(default_factory=lambda: array("d"))  # time.monotonic() per frame
    sizes: array = field(default_factory=lambda: array("I"))
    texts: list[str] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def audio_bytes(self) -> int:
        return sum(self.sizes)


class RecordingServer:
    """A minimal Melvin-compatible sink: timestamps binary frames, answers ``eof`` with an id.

    The auth frame is recorded and ignored; other texts (the client's end-of-stream ``sync``)
    get "control message unknown", as the real server answers them. No recognizer, so the
    server costs next to nothing and the client is what gets measured.
    """

    def __init__(self, port: int = 0) -> None:
        self.connections: list[Connection] = []
        self.first_frame = threading.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = port
        self._thread = threading.Thread(target=self._main, name="recording-server", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the recording server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def reset(self) -> None:
        self.connections.clear()
        self.first_frame.clear()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._websocket)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _websocket(self, request):  # type: ignore[no-untyped-def]
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = Connection(path=request.path)
        self.connections.append(conn)
        clock = time.monotonic
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    conn.arrivals.append(clock())
                    conn.sizes.append(len(msg.data))
                    self.first_frame.set()
                elif msg.type == WSMsgType.TEXT:
                    conn.texts.append(msg.data)
                    if msg.data == "eof":
                        await ws.send_str(uuid.uuid4().hex)
                        await ws.close()
                        break
                    if not msg.data.startswith('{"Authorization"'):
                        await ws.send_str("control message unknown")
        finally:
            conn.ended.set()
        return ws


class EmulatorThread:
    """Run one of the project's protocol emulators in a thread with its own event loop."""

    def __init__(self, make_emulator) -> None:  # type: ignore[no-untyped-def]
        self._make = make_emulator
        self.emulator = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.emulator = self._make()
        await self.emulator.start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await self.emulator.stop()

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulator did not start")
        return self.emulator

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


# ---- processes ----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_rusage(pid: int) -> tuple[int, float, float, int]:
    """Reap a child: (exit code, user s, system s, peak RSS in KiB)."""
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime, usage.ru_stime, usage.ru_maxrss


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the server did not listen on port {port}")
