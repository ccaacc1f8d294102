"""Phebi-Live emulator: a local server speaking the Phebi-Live WebSocket protocol (phebi.md).

Used by ``streamcli serve phebi`` and the end-to-end tests. It is strict where the protocol is
precise: the first binary bytes must be a canonical 44-byte RIFF/WAVE header for 16 kHz,
16-bit, mono PCM; the end of stream is one binary message of exactly one byte 0x01; clients
never send text. A violation is answered with ``{"Error": "..."}`` and a close (code 1008).

Constructor keywords (``PhebiEmulator(...)``), all optional:

- ``host`` (default ``127.0.0.1``), ``port`` (default 0: a free port, read ``.port`` after
  ``start()``).
- ``script``: a text file whose sentences become the words of the voiced segments
  (see ``scripted.ScriptedRecognizer``); without it the words are placeholders.
- ``recognizer``: ``script`` (the default here) or ``pocketsphinx``: words recognized from the
  audio (``recognition.py``).
- ``subscription_key``: the ``Subscription`` header value to require; ``None`` accepts any
  value, but the header must be present. A mismatch is answered HTTP 403 at the handshake.

Fault switches:

- ``fail_after`` (seconds of audio): close the socket with code 1011 and no message once that
  much audio arrived, as a crashing server would.
- ``error_message``: send ``{"Error": error_message}`` once ``error_at`` seconds of audio
  (default 1.0) arrived; then close with 1011, unless ``error_fatal=False`` (then keep going).

Every connection is recorded in ``.connections`` (``PhebiConnection``): path, raw path,
decoded ``project``/``session``/``speaker``, headers, frames, the WAV header, PCM, messages
sent, violations, and how it ended (``ended``: ``"eof"``, ``"client closed"``,
``"violation"``, ``"fail_after"``, ``"error_message"``, ``"rejected"``, ``"not found"``,
``"not a websocket"``, ``"server stopped"``, ``"connection lost"``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from streamcli.emulators.common import ConnectionRecord, Frame, WebSocketEmulator
from streamcli.emulators.recognition import Recognition
from streamcli.emulators.scripted import FRAME_SECONDS, ScriptWord

SERVE_HELP = (
    "Phebi-Live emulator: ws://HOST:PORT/sockets/live/{project}/{session}/{speaker}, strict "
    "about the WAV header and the 0x01 end byte; transcription, interim text and emotions."
)

RATE = 16000
HEADER_BYTES = 44
END_OF_STREAM = b"\x01"
ROUTE = "/sockets/live/{project}/{session}/{speaker}"
INTERIM_EVERY = 1.0  # seconds of audio between InterimTranscription updates
EMOTION_WINDOW = 2.0  # seconds of voiced audio per Emotions entry
VOICE_DB = -40.0  # the same voicing threshold as ScriptedRecognizer

Ending = Literal[
    "",
    "eof",
    "client closed",
    "violation",
    "fail_after",
    "error_message",
    "rejected",
    "not found",
    "not a websocket",
    "server stopped",
    "connection lost",
]


@dataclass(kw_only=True)
class PhebiConnection(ConnectionRecord):
    """What one client connection sent and how it went, for tests to assert on."""

    project: str = ""
    session: str = ""
    speaker: str = ""
    wav_header: bytes = b""  # the first 44 binary bytes, as received

    @property
    def audio_rate(self) -> int | None:
        return RATE


class ProtocolViolation(Exception):
    """The client broke the protocol; the message says how (it is sent as ``Error``)."""


def check_wav_header(header: bytes) -> None:
    """Raise ProtocolViolation unless this is a 44-byte PCM header for 16 kHz/16-bit/mono.

    The RIFF and data sizes are not checked: for live input the length is unknown and phebi.md
    allows 0xFFFFFFFF "or a large value"; a whole file sent from byte 0 has its real length.
    """
    riff, _riff_size, wave, fmt, fmt_size = struct.unpack_from("<4sI4s4sI", header, 0)
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", header, 20)
    data, _data_size = struct.unpack_from("<4sI", header, 36)
    expected = {
        "RIFF chunk id": (riff, b"RIFF"),
        "RIFF form type": (wave, b"WAVE"),
        "first chunk": (fmt, b"fmt "),
        "fmt chunk size": (fmt_size, 16),
        "audio format": (tag, 1),
        "channels": (channels, 1),
        "sample rate": (rate, RATE),
        "byte rate": (byte_rate, RATE * 2),
        "block align": (block_align, 2),
        "bits per sample": (bits, 16),
        "chunk at byte 36": (data, b"data"),
    }
    wrong = [
        f"{name} is {got!r}, expected {want!r}"
        for name, (got, want) in expected.items()
        if got != want
    ]
    if wrong:
        raise ProtocolViolation(
            "the first 44 bytes must be a RIFF/WAVE header for 16 kHz 16-bit mono PCM: "
            + "; ".join(wrong)
        )


@dataclass
class EmotionMeter:
    """Deterministic "emotions" from loudness: one entry per EMOTION_WINDOW s of voiced audio.

    Louder voice scores more "strong", quieter more "calm" and "sad"; an uneven level scores
    "anxious". The scores sum to 1 (as in phebi.md's example) and follow the wire order
    strong, calm, anxious, happy, sad.
    """

    rate: int = RATE
    _carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    _t: float = 0.0
    _window_start: float = 0.0
    _levels: list[float] = field(default_factory=list)  # dBFS of the voiced frames

    def feed(self, pcm: np.ndarray) -> list[dict[str, Any]]:
        samples = np.concatenate([self._carry, pcm])
        n = int(self.rate * FRAME_SECONDS)
        whole = len(samples) // n * n
        self._carry = samples[whole:]
        entries = []
        for frame in samples[:whole].reshape(-1, n):
            rms = float(np.sqrt(np.mean((frame.astype(np.float64) / 32768.0) ** 2)) + 1e-12)
            level = 20 * np.log10(rms)
            if level > VOICE_DB:
                if not self._levels:
                    self._window_start = self._t
                self._levels.append(level)
                if len(self._levels) * FRAME_SECONDS >= EMOTION_WINDOW - 1e-9:
                    entries.append(self._entry())
                    self._levels = []
            self._t += FRAME_SECONDS
        return entries

    def _entry(self) -> dict[str, Any]:
        levels = np.array(self._levels)
        loud = float(np.clip((levels.mean() - VOICE_DB) / -VOICE_DB, 0.0, 1.0))
        uneven = float(np.clip(levels.std() / 10.0, 0.0, 1.0))
        raw = np.array([loud, 1.0 - loud, 0.5 * uneven, 0.25, 0.5 * (1.0 - loud)])
        scores = [round(float(s), 3) for s in raw / raw.sum()]
        return {
            "Confidence": round(0.5 + 0.45 * loud, 3),
            "Scores": scores,
            "Speaker": 0,
            "Position": round(self._window_start, 3),
        }


def transcription(words: list[ScriptWord]) -> list[dict[str, Any]]:
    return [
        {
            "Position": w.start,
            "Duration": round(w.end - w.start, 3),
            "Text": w.word,
            "Speaker": 0,
        }
        for w in words
    ]


class _Stream:
    """The audio side of one connection: header check, PCM, recognizer, emotion meter."""

    def __init__(self, record: PhebiConnection, recognizer: Recognition) -> None:
        self.record = record
        self.recognizer = recognizer
        self.emotions = EmotionMeter()
        self._pending = bytearray()  # header bytes not yet complete, or an odd PCM byte
        self._next_interim = INTERIM_EVERY

    @property
    def seconds(self) -> float:
        return self.record.audio_seconds

    async def audio(self, data: bytes) -> dict[str, Any]:
        """Take one binary message of audio; return the message to send (possibly empty)."""
        record = self.record
        if len(record.wav_header) < HEADER_BYTES:
            missing = HEADER_BYTES - len(record.wav_header)
            record.wav_header += data[:missing]
            data = data[missing:]
            if len(record.wav_header) < HEADER_BYTES:
                return {}
            check_wav_header(record.wav_header)
        record.audio += data
        self._pending += data
        whole = len(self._pending) // 2 * 2
        pcm = np.frombuffer(bytes(self._pending[:whole]), dtype="<i2")
        del self._pending[:whole]
        finished = await self.recognizer.feed(pcm)
        emotions = self.emotions.feed(pcm)
        message: dict[str, Any] = {}
        if finished:
            message["Transcription"] = [w for seg in finished for w in transcription(seg)]
        if self.recognizer.seconds >= self._next_interim:
            self._next_interim = (self.recognizer.seconds // INTERIM_EVERY + 1) * INTERIM_EVERY
            partial = self.recognizer.current_partial()
            if partial:
                message["InterimTranscription"] = " ".join(partial)
        if emotions:
            message["Emotions"] = emotions
        return message

    async def end(self) -> dict[str, Any]:
        """The 0x01 byte arrived: the last Transcription (empty when nothing was open)."""
        if len(self.record.wav_header) < HEADER_BYTES:
            raise ProtocolViolation(
                "end-of-stream byte 0x01 before the 44-byte RIFF/WAVE header was complete"
            )
        if self._pending:
            self.record.violations.append(
                "odd number of PCM bytes: 16-bit samples need an even count (last byte dropped)"
            )
        return {"Transcription": transcription(await self.recognizer.flush())}


class PhebiEmulator(WebSocketEmulator):
    """A Phebi-Live server on loopback; see the module docstring for the switches."""

    name = "phebi"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        script: str | Path | None = None,
        subscription_key: str | None = None,
        fail_after: float | None = None,
        error_message: str | None = None,
        error_at: float = 1.0,
        error_fatal: bool = True,
        recognizer: str = "script",
    ) -> None:
        super().__init__(host, port, script, recognizer)
        self.subscription_key = subscription_key
        self.fail_after = fail_after
        self.error_message = error_message
        self.error_at = error_at
        self.error_fatal = error_fatal
        self.connections: list[PhebiConnection] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(ROUTE, self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    def _new_record(self, request: web.Request) -> PhebiConnection:
        record = PhebiConnection(
            path=request.path,
            raw_path=request.raw_path,
            headers=request.headers,
            project=request.match_info.get("project", ""),
            session=request.match_info.get("session", ""),
            speaker=request.match_info.get("speaker", ""),
        )
        self.connections.append(record)
        return record

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request)
        record.status, record.ended = 404, "not found"
        record.finished.set()
        return web.Response(status=404, text=f"No socket at {request.raw_path}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request)
        key = request.headers.get("Subscription")
        if not key or (self.subscription_key is not None and key != self.subscription_key):
            # phebi.md: handshake codes are undocumented; their REST API answers 403.
            record.status, record.ended = 403, "rejected"
            record.finished.set()
            return web.Response(status=403, text="Invalid subscription key.")
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            record.status, record.ended = 400, "not a websocket"
            record.finished.set()
            return web.Response(status=400, text="Expected a WebSocket upgrade")
        await ws.prepare(request)
        self._open[ws] = record
        try:
            await self._converse(ws, record)
        finally:
            self._connection_over(ws, record)
        return ws

    async def _send(self, ws: web.WebSocketResponse, record: PhebiConnection, msg: dict) -> None:
        record.sent.append(msg)
        await ws.send_str(json.dumps(msg))

    async def _close(
        self, ws: web.WebSocketResponse, record: PhebiConnection, ending: Ending, code: int
    ) -> None:
        record.ended, record.closed_by = ending, "server"
        await ws.close(code=code)

    async def _converse(self, ws: web.WebSocketResponse, record: PhebiConnection) -> None:
        stream = _Stream(record, self.recognizers.new(RATE, self.script, owner=record))
        error_sent = False
        async for msg in ws:
            try:
                if msg.type == WSMsgType.TEXT:
                    record.frames.append(Frame("text", len(msg.data), msg.data))
                    raise ProtocolViolation(
                        "text messages are not part of the protocol: send audio as binary "
                        "and end with the single byte 0x01"
                    )
                if msg.type != WSMsgType.BINARY:
                    break
                record.frames.append(Frame("binary", len(msg.data)))
                if msg.data == END_OF_STREAM:
                    record.eof = True
                    await self._send(ws, record, await stream.end())
                    await self._close(ws, record, "eof", WSCloseCode.OK)
                    return
                reply = await stream.audio(msg.data)
            except ProtocolViolation as violation:
                record.violations.append(str(violation))
                await self._send(ws, record, {"Error": str(violation)})
                await self._close(ws, record, "violation", WSCloseCode.POLICY_VIOLATION)
                return
            if self.fail_after is not None and stream.seconds >= self.fail_after:
                await self._close(ws, record, "fail_after", WSCloseCode.INTERNAL_ERROR)
                return
            if reply:
                await self._send(ws, record, reply)
            if (
                self.error_message is not None
                and not error_sent
                and stream.seconds >= self.error_at
            ):
                error_sent = True
                await self._send(ws, record, {"Error": self.error_message})
                if self.error_fatal:
                    await self._close(ws, record, "error_message", WSCloseCode.INTERNAL_ERROR)
                    return
        if record.ended:  # stop() closed it
            return
        # The client closed (or the connection broke) without the 0x01 byte.
        record.violations.append(
            "the connection closed without the end-of-stream byte 0x01: "
            "the final transcription is never sent"
        )
        record.ended, record.closed_by = "client closed", "client"
