"""Shared pieces of the protocol emulators: the connection record, the listening base class
and the serve loop. The recognizers are in ``scripted.py`` (words by script), ``sphinx.py``
(words heard) and ``recognition.py`` (the one interface, and the worker pool)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from aiohttp import WSCloseCode, web

from streamcli.emulators.recognition import RecognizerHost
from streamcli.emulators.scripted import split_sentences


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

    def __init__(
        self, host: str, port: int, script: str | Path | None, recognizer: str = "script"
    ) -> None:
        self.host = host
        self.port = port
        self.script = split_sentences(Path(script).read_text(encoding="utf-8")) if script else []
        self.recognizers = RecognizerHost(recognizer, script)
        self._runner: web.AppRunner | None = None
        self._open: dict[web.WebSocketResponse, Any] = {}  # open sockets -> their records

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _connection_over(self, ws: web.WebSocketResponse, record: ConnectionRecord) -> None:
        """A connection's handler returned or failed: how it ended, and its recognizers back."""
        self._open.pop(ws, None)
        if not record.ended:  # the handler failed, e.g. the peer vanished mid-send
            record.ended = "connection lost"
        record.close_code = ws.close_code
        record.finished.set()
        self.recognizers.release(record)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        await self.recognizers.start()
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
        await self.recognizers.stop()


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
    recognizers = getattr(emulator, "recognizers", None)
    note = RECOGNIZER if recognizers is not None and recognizers.kind != "script" else NO_RECOGNIZER
    listening = f"{emulator.name} emulator listening on {emulator.url} (Ctrl-C stops it)"
    lines = [note, *banner, listening]
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
    "note: no speech recognizer: the words come from --script FILE, spread over the voiced "
    "parts of the audio, or are placeholders (word1 word2 ...); for words recognized from the "
    "audio: pip install 'streamcli[asr]' and --recognizer pocketsphinx."
)
RECOGNIZER = "recognizer: PocketSphinx (US English), one worker process per core."
