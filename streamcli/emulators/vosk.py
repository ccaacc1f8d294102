"""Vosk server emulator: the WebSocket protocol of alphacep/vosk-server (bodhi.md, last section).

Used by ``streamcli serve vosk`` and the end-to-end tests. It behaves like vosk-server's
``websocket/asr_server.py``: a text message containing ``config`` sets the options and gets no
reply; every binary message of PCM s16le gets exactly one reply, ``{"partial": ...}`` or, when
a segment ended in that chunk, ``{"result": [...], "text": ...}`` (times on the stream
timeline); the text ``{"eof" : 1}`` — byte-exact, with the space before the colon — gets the
final result and the server closes. Any other text crashes the real server (it hands the text
to the recognizer as audio), so the emulator records a violation and closes with 1011.
Replies are pretty-printed like vosk-api's JSON (``"text" : ""`` on lines of their own).

Constructor keywords (``VoskEmulator(...)``), all optional:

- ``host`` (default ``127.0.0.1``), ``port`` (default 0: a free port, read ``.port`` after
  ``start()``). Any request path is accepted, as vosk-server ignores it.
- ``script``: a text file whose sentences become the words of the voiced segments
  (see ``scripted.ScriptedRecognizer``); without it the words are placeholders.
- ``recognizer``: ``script`` (the default here) or ``pocketsphinx``: words recognized from the
  audio (``recognition.py``), with their confidences.
- ``sample_rate`` (default 8000, vosk-server's ``VOSK_SAMPLE_RATE``): the rate assumed when the
  client sends no config.
- ``words`` (default True, ``VOSK_SHOW_WORDS``): include the ``result`` word list; a client
  config ``{"words": false}`` turns it off per connection.
- ``reply_to_config`` (default False): also answer each config with ``{"partial": ""}``. The
  real server does not; the switch exists for clients that were written to expect it.

Every connection is recorded in ``.connections`` (``VoskConnection``): path, headers, frames,
configs, sample rate, PCM, messages sent, violations, and how it ended (``ended``:
``"eof"``, ``"violation"``, ``"client closed"``, ``"not a websocket"``, ``"server stopped"``,
``"connection lost"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from streamcli.emulators.common import ConnectionRecord, Frame, WebSocketEmulator
from streamcli.emulators.recognition import Recognition
from streamcli.emulators.scripted import ScriptWord

SERVE_HELP = (
    "Vosk server emulator (alphacep/vosk-server): ws://HOST:PORT/, optional "
    '{"config": {"sample_rate": N}}, raw PCM, EOF exactly {"eof" : 1}; one reply per chunk.'
)

EOF_TEXT = '{"eof" : 1}'  # vosk-server compares the message with exactly this string
DEFAULT_RATE = 8000

Ending = Literal[
    "",
    "eof",
    "violation",
    "client closed",
    "not a websocket",
    "server stopped",
    "connection lost",
]


@dataclass(kw_only=True)
class VoskConnection(ConnectionRecord):
    """What one client connection sent and how it went, for tests to assert on."""

    sample_rate: int  # the rate the recognizer used (or will use)
    words: bool
    configs: list[dict[str, Any]] = field(default_factory=list)  # each "config" object received

    @property
    def audio_rate(self) -> int | None:
        return self.sample_rate


class ServerCrash(Exception):
    """What makes the real vosk-server's handler raise: the connection ends with 1011."""


def vosk_json(message: dict[str, Any]) -> str:
    """JSON laid out the way vosk-api prints it: indented, with " : " between key and value."""
    return json.dumps(message, indent=2, separators=(",", " : "), ensure_ascii=False)


def result(words: list[ScriptWord], show_words: bool) -> dict[str, Any]:
    """A vosk Result/FinalResult: absolute times; ``{"text": ""}`` when nothing was said."""
    message: dict[str, Any] = {}
    if words and show_words:
        message["result"] = [
            {"conf": w.conf, "end": w.end, "start": w.start, "word": w.word} for w in words
        ]
    message["text"] = " ".join(w.word for w in words)
    return message


class _Stream:
    """The recognizer of one connection, created with the first audio (as vosk-server does)."""

    def __init__(self, record: VoskConnection, recognizer: Recognition) -> None:
        self.record = record
        self.recognizer = recognizer
        self._pending = bytearray()

    async def audio(self, data: bytes) -> dict[str, Any]:
        if len(data) % 2:
            self.record.violations.append(
                f"binary message of {len(data)} bytes: not a whole number of 16-bit samples"
            )
        self.record.audio += data
        self._pending += data
        whole = len(self._pending) // 2 * 2
        pcm = np.frombuffer(bytes(self._pending[:whole]), dtype="<i2")
        del self._pending[:whole]
        ended = await self.recognizer.feed(pcm)
        if ended:  # one reply per message: segments ending in the same chunk are merged
            return result([w for seg in ended for w in seg], self.record.words)
        return {"partial": " ".join(self.recognizer.current_partial())}

    async def end(self) -> dict[str, Any]:
        return result(await self.recognizer.flush(), self.record.words)


def apply_config(record: VoskConnection, text: str, started: bool) -> None:
    """Take a config message the way vosk-server does (it raises on what it cannot parse)."""
    try:
        config = json.loads(text)["config"]
        if not isinstance(config, dict):
            raise TypeError("config is not an object")
        rate = float(config["sample_rate"]) if "sample_rate" in config else None
    except (ValueError, KeyError, TypeError) as e:
        raise ServerCrash(
            f"text message {text!r} contains 'config' but is not "
            f'{{"config": {{"sample_rate": N, ...}}}}: vosk-server fails on it ({e})'
        ) from None
    if rate is not None and not rate > 0:
        raise ServerCrash(f"config sample_rate {config['sample_rate']!r} is not a positive rate")
    record.configs.append(config)
    if started:
        # vosk-server builds the recognizer from the config once, with the first audio.
        record.violations.append("config after audio has no effect: the recognizer exists")
        return
    if rate is not None:
        record.sample_rate = round(rate)
    if "words" in config:
        record.words = bool(config["words"])


def unexpected_text(text: str) -> str:
    if text.replace(" ", "") == EOF_TEXT.replace(" ", ""):
        return (
            f"text message {text!r} is not the end-of-stream marker: vosk-server compares "
            f"the exact string {EOF_TEXT} (with a space before the colon) and fails on others"
        )
    return (
        f"text message {text!r} is neither a config nor {EOF_TEXT}: vosk-server hands it to "
        "the recognizer as audio and fails"
    )


class VoskEmulator(WebSocketEmulator):
    """A vosk-server on loopback; see the module docstring for the switches."""

    name = "vosk"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        script: str | Path | None = None,
        sample_rate: int = DEFAULT_RATE,
        words: bool = True,
        reply_to_config: bool = False,
        recognizer: str = "script",
    ) -> None:
        super().__init__(host, port, script, recognizer)
        self.sample_rate = sample_rate
        self.words = words
        self.reply_to_config = reply_to_config
        self.connections: list[VoskConnection] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/{tail:.*}", self._handle)  # vosk-server ignores the path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = VoskConnection(
            path=request.path,
            raw_path=request.raw_path,
            headers=request.headers,
            sample_rate=self.sample_rate,
            words=self.words,
        )
        self.connections.append(record)
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

    async def _send(self, ws: web.WebSocketResponse, record: VoskConnection, msg: dict) -> None:
        record.sent.append(msg)
        await ws.send_str(vosk_json(msg))

    def _new_stream(self, record: VoskConnection) -> _Stream:
        """vosk-server makes the recognizer with the first audio (or the eof)."""
        recognition = self.recognizers.new(record.sample_rate, self.script, owner=record)
        return _Stream(record, recognition)

    async def _converse(self, ws: web.WebSocketResponse, record: VoskConnection) -> None:
        stream: _Stream | None = None
        async for msg in ws:
            try:
                if msg.type == WSMsgType.TEXT:
                    record.frames.append(Frame("text", len(msg.data), msg.data))
                    # vosk-server: `isinstance(message, str) and 'config' in message`
                    if "config" in msg.data:
                        apply_config(record, msg.data, started=stream is not None)
                        if self.reply_to_config:
                            await self._send(ws, record, {"partial": ""})
                        continue
                    if msg.data != EOF_TEXT:
                        raise ServerCrash(unexpected_text(msg.data))
                    record.eof = True
                    stream = stream or self._new_stream(record)
                    await self._send(ws, record, await stream.end())
                    record.ended, record.closed_by = "eof", "server"
                    await ws.close(code=WSCloseCode.OK)
                    return
                if msg.type != WSMsgType.BINARY:
                    break
                record.frames.append(Frame("binary", len(msg.data)))
                stream = stream or self._new_stream(record)
                await self._send(ws, record, await stream.audio(msg.data))
            except ServerCrash as crash:
                record.violations.append(str(crash))
                record.ended, record.closed_by = "violation", "server"
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)
                return
        if not record.ended:  # not closed by stop()
            record.violations.append(f"the connection closed before {EOF_TEXT}")
            record.ended, record.closed_by = "client closed", "client"
