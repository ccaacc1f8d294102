"""Soak: 60 minutes of audio at ``--speed 60`` through every WebSocket backend's emulator, all
four at once: exit 0, every final the emulator sent is on stdout, and memory stays flat
(the client's RSS early on against its peak near the end, printed and asserted).

Slow (about 70 seconds; ``--speed 30`` took 2 minutes of CI's budget):
``pytest -m slow -s tests/e2e/test_soak.py`` (CI runs it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CLEAN_ENV

from .backend_matrix import WEBSOCKET_BACKENDS, args, emulator, env, finals_sent

pytestmark = pytest.mark.slow

RATE = 8000
MINUTES = 60
SPEED = 60
VOICED = (1.0, 1.6, 2.2)  # seconds of voice, in turn; each burst is one segment, one final
PAUSE = 0.7
TAIL = 2.0  # trailing silence: the last segment closes, and a Melvin pass sees it
MAX_GROWTH_MB = 30.0


def write_hour(path: Path) -> int:
    """Write the hour of 8 kHz mono speech-like audio block by block; return the bursts."""
    total = MINUTES * 60 * RATE
    bursts = 0
    written = 0
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        f.write(np.zeros(int(0.3 * RATE), np.float32))
        written += int(0.3 * RATE)
        while True:
            seconds = VOICED[bursts % len(VOICED)]
            need = int((seconds + PAUSE) * RATE)
            if written + need > total - int(TAIL * RATE):
                break
            t = np.arange(int(seconds * RATE)) / RATE
            f.write((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
            f.write(np.zeros(int(PAUSE * RATE), np.float32))
            written += need
            bursts += 1
        f.write(np.zeros(total - written, np.float32))
    return bursts


def rss_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Soak:
    backend: str
    code: int = -1
    seconds: float = 0.0
    finals: int = 0
    rss_start_kb: int = 0
    peak_kb: int = 0
    stderr: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.rss_start_kb) / 1024

    def line(self) -> str:
        return (
            f"{self.backend:7s} exit {self.code}  {self.seconds:6.1f} s  finals {self.finals:5d}  "
            f"RSS start {self.rss_start_kb / 1024:6.1f} MB  peak {self.peak_kb / 1024:6.1f} MB  "
            f"growth {self.growth_mb:+5.1f} MB"
        )


async def soak(backend: str, wav: Path, url: str) -> Soak:
    result = Soak(backend)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamcli", backend, str(wav),
        *args(backend, url, "--speed", str(SPEED), "--json", "--timeout", "60"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**CLEAN_ENV, "NO_COLOR": "1", "XDG_CONFIG_HOME": "/nonexistent", **env(backend)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None

    async def read_stdout() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "final" and not event.get("unconfirmed"):
                result.finals += 1
            elif event["type"] == "error":
                result.errors.append(event["message"])

    async def watch_memory() -> None:
        while proc.returncode is None:
            await asyncio.sleep(1.0)
            if not result.rss_start_kb and time.monotonic() - started > 10:
                result.rss_start_kb = rss_kb(proc.pid, "VmRSS") or 0
            peak = rss_kb(proc.pid, "VmHWM")
            if peak:
                result.peak_kb = peak  # the high-water mark; the last reading is the peak

    watcher = asyncio.create_task(watch_memory())
    err, _ = await asyncio.gather(proc.stderr.read(), read_stdout())
    result.code = await proc.wait()
    watcher.cancel()
    result.seconds = time.monotonic() - started
    result.stderr = err.decode()
    return result


async def test_an_hour_of_audio_through_every_backend_keeps_every_final_and_memory_flat(tmp_path):
    wav = tmp_path / "hour.wav"
    bursts = write_hour(wav)
    emus = {b: emulator(b) for b in WEBSOCKET_BACKENDS}
    for emu in emus.values():
        await emu.start()
    try:
        results = await asyncio.gather(*(soak(b, wav, emus[b].url) for b in WEBSOCKET_BACKENDS))
        await asyncio.sleep(0.5)  # let the emulators record the last messages
    finally:
        for emu in emus.values():
            await emu.stop()
    report = "\n".join(r.line() for r in results)
    print(f"\nsoak: {MINUTES} min of audio at --speed {SPEED}, {bursts} segments\n{report}")
    for r in results:
        sent = finals_sent(r.backend, emus[r.backend])
        assert r.code == 0, f"{r.backend}: {r.errors or r.stderr[-500:]}\n{report}"
        assert r.finals == sent == bursts, f"{r.backend}: {r.finals} of {sent}\n{report}"
        assert r.rss_start_kb and r.peak_kb, report
        assert r.growth_mb < MAX_GROWTH_MB, report
