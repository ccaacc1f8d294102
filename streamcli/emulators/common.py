"""Shared pieces of the protocol emulators: a scripted "recognizer" and the serve loop.

The emulators have no speech recognizer. ``ScriptedRecognizer`` finds the voiced parts of the
received audio by energy (20 ms frames) and hands out the words of a transcript: one sentence
of the script per voiced segment (a pause of ``min_pause`` ends a segment), its words spread
evenly over the segment. Without a script it makes placeholder words, about one per 0.4 s of
voice. It knows nothing about any client: it only sees PCM samples.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from aiohttp import WSCloseCode, web

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class ScriptWord:
    word: str
    start: float
    end: float
    conf: float


def split_sentences(text: str) -> list[list[str]]:
    sentences = [s.split() for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip())]
    return [s for s in sentences if s]


@dataclass
class ScriptedRecognizer:
    rate: int = 16000
    script: list[list[str]] = field(default_factory=list)
    threshold_db: float = -40.0  # frame RMS above this (dBFS) is voice
    min_pause: float = 0.3
    _carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    _t: float = 0.0  # audio seconds analysed
    _voice_start: float | None = None
    _last_voice: float = 0.0
    _next_sentence: int = 0
    _placeholder: int = 0
    finals: list[list[ScriptWord]] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path | None, rate: int = 16000) -> ScriptedRecognizer:
        script = split_sentences(Path(path).read_text(encoding="utf-8")) if path else []
        return cls(rate=rate, script=script)

    @property
    def seconds(self) -> float:
        return self._t

    def feed(self, pcm: np.ndarray) -> list[list[ScriptWord]]:
        """Analyse int16 mono samples; return the segments that just ended, as timed words."""
        samples = np.concatenate([self._carry, pcm.astype(np.int16, copy=False)])
        n = int(self.rate * FRAME_SECONDS)
        whole = len(samples) // n * n
        self._carry = samples[whole:]
        done: list[list[ScriptWord]] = []
        for frame in samples[:whole].reshape(-1, n):
            rms = float(np.sqrt(np.mean((frame.astype(np.float64) / 32768.0) ** 2)) + 1e-12)
            voiced = 20 * np.log10(rms) > self.threshold_db
            if voiced:
                if self._voice_start is None:
                    self._voice_start = self._t
                self._last_voice = self._t + FRAME_SECONDS
            elif self._voice_start is not None and self._t - self._last_voice >= self.min_pause:
                done.append(self._close_segment())
            self._t += FRAME_SECONDS
        self.finals += done
        return done

    def _close_segment(self) -> list[ScriptWord]:
        assert self._voice_start is not None
        start, end = self._voice_start, self._last_voice
        self._voice_start = None
        return self._timed(self._take_sentence(end - start), start, end)

    def _take_sentence(self, seconds: float) -> list[str]:
        if self._next_sentence < len(self.script):
            self._next_sentence += 1
            return self.script[self._next_sentence - 1]
        count = max(1, round(seconds / 0.4))
        words = [f"word{self._placeholder + i + 1}" for i in range(count)]
        self._placeholder += count
        return words

    @staticmethod
    def _timed(words: list[str], start: float, end: float) -> list[ScriptWord]:
        step = (end - start) / len(words)
        return [
            ScriptWord(w, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9)
            for i, w in enumerate(words)
        ]

    def flush(self) -> list[ScriptWord]:
        """Close the segment still being spoken: the end of the stream is a pause never seen."""
        if self._voice_start is None:
            return []
        words = self._close_segment()
        self.finals.append(words)
        return words

    def open_span(self) -> tuple[float, float] | None:
        """(start, last voiced time) of the segment still being spoken, if any."""
        return None if self._voice_start is None else (self._voice_start, self._last_voice)

    def current_partial(self) -> list[str]:
        """Words of the segment still being spoken, growing about one per 0.3 s of it."""
        if self._voice_start is None:
            return []
        seconds = self._last_voice - self._voice_start
        if self._next_sentence < len(self.script):
            sentence = self.script[self._next_sentence]
            return sentence[: max(1, min(len(sentence) - 1, int(seconds / 0.3)))]
        return [f"word{self._placeholder + i + 1}" for i in range(max(1, round(seconds / 0.4)))]


@dataclass(frozen=True)
class Frame:
    """One WebSocket message from the client: text keeps its data, binary only its length."""

    kind: Literal["text", "binary"]
    length: int
    text: str | None = None


@dataclass(kw_only=True)
class ConnectionRecord:
    """What one client connection sent and how it went, for tests to assert on."""

    path: str
    raw_path: str
    headers: Mapping[str, str]  # the request's, case-insensitive
    status: int = 101  # HTTP status of the handshake
    frames: list[Frame] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)  # the PCM, as received
    sent: list[dict[str, Any]] = field(default_factory=list)  # server messages, in order
    violations: list[str] = field(default_factory=list)
    eof: bool = False  # the client's end-of-stream arrived
    ended: str = ""  # "" while the connection is open
    closed_by: Literal["", "client", "server"] = ""
    close_code: int | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def audio_rate(self) -> int | None:
        """The sample rate of ``audio`` (None while unknown)."""
        return None

    @property
    def audio_bytes(self) -> int:
        return len(self.audio)

    @property
    def pcm(self) -> np.ndarray:
        """The received PCM as int16 samples (a trailing odd byte is dropped)."""
        whole = len(self.audio) // 2 * 2
        return np.frombuffer(bytes(self.audio[:whole]), dtype="<i2")

    @property
    def audio_seconds(self) -> float:
        rate = self.audio_rate
        return len(self.audio) // 2 / rate if rate else 0.0


class WebSocketEmulator:
    """Listening, ``url`` and stopping, shared by the aiohttp emulators; each adds its routes."""

    name = "emulator"

    def __init__(self, host: str, port: int, script: str | Path | None) -> None:
        self.host = host
        self.port = port
        self.script = split_sentences(Path(script).read_text(encoding="utf-8")) if script else []
        self._runner: web.AppRunner | None = None
        self._open: dict[web.WebSocketResponse, Any] = {}  # open sockets -> their records

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws, record in list(self._open.items()):
            record.ended, record.closed_by = "server stopped", "server"
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopped")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Emulator(Protocol):
    """What ``streamcli serve`` and the tests need from every emulator."""

    name: str
    host: str
    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def url(self) -> str: ...


async def serve_forever(emulator: Emulator, banner: list[str]) -> None:
    """Start, print where it listens (stderr), run until Ctrl-C."""
    await emulator.start()
    lines = [*banner, f"{emulator.name} emulator listening on {emulator.url} (Ctrl-C stops it)"]
    rest_url = getattr(emulator, "rest_url", None)  # bound ports are known only after start()
    if rest_url and getattr(emulator, "rest_port", None):
        lines.append(f"REST exports on {rest_url}")
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


NO_RECOGNIZER = (
    "note: this emulator has no speech recognizer: its words come from --script FILE, "
    "spread over the voiced parts of the audio, or are placeholders (word1 word2 ...)."
)
