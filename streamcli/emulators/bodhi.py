"""Navana Bodhi emulator: a local server speaking Bodhi's streaming WebSocket protocol (bodhi.md).

Used by ``streamcli serve bodhi`` and the end-to-end tests. The handshake needs the headers
``x-api-key`` and ``x-customer-id``; then exactly one text config, binary PCM s16le at its
``sample_rate``, and the text ``{"eof": 1}``. The server answers a ``partial`` per audio chunk
(unless ``exclude_partial``), one ``complete`` per segment, and after the EOF the last segment
and a final message with ``eos: true``; it then waits for the client to close. Anything else
from the client is answered with ``{"error", "message", "code": 400, "timestamp"}`` and a close.

Constructor keywords (``BodhiEmulator(...)``), all optional:

- ``host`` (default ``127.0.0.1``), ``port`` (default 0: a free port, read ``.port`` after
  ``start()``).
- ``script``: a text file whose sentences become the words of the voiced segments
  (see ``scripted.ScriptedRecognizer``); without it the words are placeholders.
- ``recognizer``: ``script`` (the default here) or ``pocketsphinx``: words recognized from the
  audio (``recognition.py``), 8 kHz resampled to the model's 16 kHz.
- ``api_key``, ``customer_id``: the header values to require; ``None`` accepts any value, but
  the header must be present. A mismatch is answered HTTP 401 at the handshake.
- ``models``: the model names to accept (default ``DEFAULT_MODELS``: the
  ``{bn,en,hi,kn,ml,mr,ta,te,gu}-{general,banking}-v2-8khz`` family and
  ``{lang}-general-v2-16khz``).
- ``idle_timeout`` (seconds, default 15): close the connection when the client sent no message
  for that long, as the real service does (WebSocket pings do not count).
- ``eos_close_after`` (seconds, default 3): after the ``eos`` message, close the socket if the
  client has not closed it by then.

Fault switches:

- ``reject``: 401, 402 or 403 — refuse every handshake with that status and the vendor's text.
- ``error_after`` (seconds of audio): send an ``internal_error`` message with code 500, then
  close with 1011.
- ``hex_segment_ids``: send ``segment_id`` as an opaque hex string instead of an int.

Every connection is recorded in ``.connections`` (``BodhiConnection``): path, headers, frames,
the parsed config, PCM, messages sent, violations, and how it ended (``ended``: ``"eos"``,
``"error"``, ``"error_after"``, ``"idle timeout"``, ``"client closed"``, ``"rejected"``,
``"not found"``, ``"not a websocket"``, ``"server stopped"``, ``"connection lost"``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from streamcli.emulators.common import ConnectionRecord, Frame, WebSocketEmulator
from streamcli.emulators.recognition import Recognition
from streamcli.emulators.scripted import ScriptWord

SERVE_HELP = (
    "Navana Bodhi emulator: ws://HOST:PORT/ with x-api-key/x-customer-id headers, one JSON "
    'config, raw PCM, {"eof": 1}; partial/complete segments, eos, idle close after 15 s.'
)

EOF_TEXT = '{"eof": 1}'  # bodhi.md: exactly this string
REJECTIONS = {
    401: "Invalid API key or customer ID.",
    402: "Insufficient balance.",
    403: "Customer has been deactivated",
}
LANGUAGES = ("bn", "en", "hi", "kn", "ml", "mr", "ta", "te", "gu")
DEFAULT_MODELS = frozenset(
    [f"{lang}-{domain}-v2-8khz" for lang in LANGUAGES for domain in ("general", "banking")]
    + [f"{lang}-general-v2-16khz" for lang in LANGUAGES]
)
MIN_SAMPLE_RATE = 8000  # the vendor's README: "at least 8000Hz"
ENDPOINT_SILENCE_RANGE = (0.44, 1.2)  # bodhi.md: the server clamps endpoint_silence_duration
# at_start_lid and transliterate: booleans the official SDK 1.4.0 sends (bodhi.md).
BOOL_KEYS = ("parse_number", "exclude_partial", "aux", "at_start_lid", "transliterate")
KNOWN_KEYS = {
    "sample_rate",
    "transaction_id",
    "model",
    "hotwords",
    "endpoint_silence_duration",
    *BOOL_KEYS,
}

Ending = Literal[
    "",
    "eos",
    "error",
    "error_after",
    "idle timeout",
    "client closed",
    "rejected",
    "not found",
    "not a websocket",
    "server stopped",
    "connection lost",
]


@dataclass(kw_only=True)
class BodhiConnection(ConnectionRecord):
    """What one client connection sent and how it went, for tests to assert on."""

    config: dict[str, Any] | None = None  # the accepted config (keys with null values dropped)

    @property
    def sample_rate(self) -> int | None:
        return self.config["sample_rate"] if self.config else None

    @property
    def audio_rate(self) -> int | None:
        return self.sample_rate


class BodhiError(Exception):
    """A condition the server reports as an error message (then it closes)."""

    def __init__(self, kind: str, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


def error_message(kind: str, message: str, code: int) -> dict[str, Any]:
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"error": kind, "message": message, "code": code, "timestamp": timestamp}


def is_uuid4(text: object) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        value = uuid.UUID(text)
    except ValueError:
        return False
    return value.version == 4 and value.variant == uuid.RFC_4122


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_config(text: str, models: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """The config of the first message, and remarks on keys the server ignores.

    Raises BodhiError (code 400) for what the service rejects: malformed config, invalid
    transaction_id, unavailable model. The error type names are this emulator's own; the real
    ones are undocumented.
    """
    shape = '{"config": {"sample_rate": ..., "transaction_id": ..., "model": ...}}'
    try:
        message = json.loads(text)
    except ValueError:
        raise BodhiError("invalid_config", f"the config is not JSON; expected {shape}") from None
    if not isinstance(message, dict) or list(message) != ["config"]:
        raise BodhiError("invalid_config", f"expected exactly {shape}")
    if not isinstance(message["config"], dict):
        raise BodhiError("invalid_config", f"config must be an object: {shape}")
    remarks = [
        f"config.{key} is null: omit keys that are unset"
        for key, value in message["config"].items()
        if value is None
    ]
    config = {k: v for k, v in message["config"].items() if v is not None}
    remarks += [f"unknown config key {key!r} (ignored)" for key in config if key not in KNOWN_KEYS]
    for key in ("sample_rate", "transaction_id", "model"):
        if key not in config:
            raise BodhiError("invalid_config", f"config.{key} is required")
    rate = config["sample_rate"]
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < MIN_SAMPLE_RATE:
        raise BodhiError(
            "invalid_config",
            f"config.sample_rate must be an integer of at least {MIN_SAMPLE_RATE}, not {rate!r}",
        )
    if not is_uuid4(config["transaction_id"]):
        raise BodhiError(
            "invalid_transaction_id",
            f"transaction_id must be a UUID4 string, not {config['transaction_id']!r}",
        )
    if config["model"] not in set(models):
        raise BodhiError("model_not_available", f"model {config['model']!r} is not available")
    for key in BOOL_KEYS:
        if key in config and not isinstance(config[key], bool):
            raise BodhiError("invalid_config", f"config.{key} must be true or false")
    if "endpoint_silence_duration" in config and not is_number(config["endpoint_silence_duration"]):
        raise BodhiError("invalid_config", "config.endpoint_silence_duration must be a number")
    if "hotwords" in config and not valid_hotwords(config["hotwords"]):
        raise BodhiError(
            "invalid_config",
            'config.hotwords must be a list of {"phrase": "...", "score": number}',
        )
    return config, remarks


def valid_hotwords(hotwords: object) -> bool:
    return isinstance(hotwords, list) and all(
        isinstance(h, dict)
        and isinstance(h.get("phrase"), str)
        and h["phrase"].strip() != ""
        and set(h) <= {"phrase", "score"}
        and ("score" not in h or is_number(h["score"]))
        for h in hotwords
    )


class _Stream:
    """The audio side of one configured connection: PCM in, partial/complete messages out."""

    def __init__(
        self,
        record: BodhiConnection,
        config: dict[str, Any],
        recognizer: Recognition,
        *,
        call_id: str,
        hex_segment_ids: bool,
    ) -> None:
        self.record = record
        self.rate: int = config["sample_rate"]
        self.recognizer = recognizer
        if "endpoint_silence_duration" in config:
            low, high = ENDPOINT_SILENCE_RANGE
            self.recognizer.min_pause = min(high, max(low, config["endpoint_silence_duration"]))
        self.language = config["model"].split("-")[0]
        self.partials = not config.get("exclude_partial", False)
        self.aux = config.get("aux", False)
        self.call_id = call_id
        self.hex_segment_ids = hex_segment_ids
        self._segment = 0
        self._pending = bytearray()

    @property
    def seconds(self) -> float:
        return len(self.record.audio) // 2 / self.rate

    async def audio(self, data: bytes) -> list[dict[str, Any]]:
        if len(data) % 2:
            self.record.violations.append(
                f"binary message of {len(data)} bytes: not a whole number of 16-bit samples"
            )
        self.record.audio += data
        self._pending += data
        whole = len(self._pending) // 2 * 2
        pcm = np.frombuffer(bytes(self._pending[:whole]), dtype="<i2")
        del self._pending[:whole]
        messages = [self._complete(words) for words in await self.recognizer.feed(pcm)]
        if self.partials:
            messages.append(self._partial())
        return messages

    async def end(self) -> list[dict[str, Any]]:
        """After {"eof": 1}: the segment still open, then the eos message."""
        words = await self.recognizer.flush()
        messages = [self._complete(words)] if words else []
        # The eos message is a complete of its own (empty, with a fresh segment_id), so that
        # "one complete per segment_id" holds; clients skip empty completes for display.
        eos = self._message("complete", [], [], round(self.seconds, 3), eos=True)
        eos["segment_meta"].update(confidence=0.0, words=[])
        self._segment += 1
        return [*messages, eos]

    def _segment_id(self) -> int | str:
        if not self.hex_segment_ids:
            return self._segment
        # bodhi.md: segment_id "has been seen as a hex string"; make it opaque (not a number
        # written in hex) so that a client which parses it as an int fails visibly.
        return hashlib.sha1(f"{self.call_id}:{self._segment}".encode()).hexdigest()[:16]

    def _message(
        self,
        kind: Literal["partial", "complete"],
        tokens: list[str],
        timestamps: list[float],
        start_time: float,
        *,
        eos: bool = False,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "call_id": self.call_id,
            "segment_id": self._segment_id(),
            "eos": eos,
            "type": kind,
            "text": " ".join(tokens),
            "language_code": self.language,
            "segment_meta": {
                "tokens": tokens,
                "timestamps": timestamps,
                "start_time": start_time,
                "confidence": 0.9 if tokens else 0.0,
            },
        }
        if self.aux:
            message["aux_info"] = {
                "request_time": round(0.01 * len(tokens), 3),
                "eot_wait_time": round(self.recognizer.min_pause, 3),
                "processed_audio_duration": round(self.seconds, 3),
            }
        return message

    def _complete(self, words: list[ScriptWord]) -> dict[str, Any]:
        start = words[0].start
        message = self._message(
            "complete",
            [w.word for w in words],
            [round(w.start - start, 3) for w in words],
            start,
        )
        meta = message["segment_meta"]
        meta["confidence"] = round(sum(w.conf for w in words) / len(words), 3)
        meta["words"] = [
            {
                "word": w.word,
                "confidence": w.conf,
                "start_time": round(w.start - start, 3),  # relative to the segment start
                "end_time": round(w.end - start, 3),
            }
            for w in words
        ]
        self._segment += 1
        return message

    def _partial(self) -> dict[str, Any]:
        tokens = self.recognizer.current_partial()
        if not tokens:
            return self._message("partial", [], [], round(self.seconds, 3))
        start, last = self.recognizer.open_span() or (0.0, 0.0)
        step = (last - start) / len(tokens)
        timestamps = [round(i * step, 3) for i in range(len(tokens))]
        return self._message("partial", tokens, timestamps, round(start, 3))


class BodhiEmulator(WebSocketEmulator):
    """A Bodhi streaming server on loopback; see the module docstring for the switches."""

    name = "bodhi"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        script: str | Path | None = None,
        api_key: str | None = None,
        customer_id: str | None = None,
        models: Iterable[str] | None = None,
        idle_timeout: float = 15.0,
        eos_close_after: float = 3.0,
        reject: int | None = None,
        error_after: float | None = None,
        hex_segment_ids: bool = False,
        recognizer: str = "script",
    ) -> None:
        if reject is not None and reject not in REJECTIONS:
            raise ValueError(f"reject must be one of {sorted(REJECTIONS)}, not {reject}")
        super().__init__(host, port, script, recognizer)
        self.api_key = api_key
        self.customer_id = customer_id
        self.models = frozenset(models) if models is not None else DEFAULT_MODELS
        self.idle_timeout = idle_timeout
        self.eos_close_after = eos_close_after
        self.reject = reject
        self.error_after = error_after
        self.hex_segment_ids = hex_segment_ids
        self.connections: list[BodhiConnection] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    def _new_record(self, request: web.Request) -> BodhiConnection:
        record = BodhiConnection(
            path=request.path, raw_path=request.raw_path, headers=request.headers
        )
        self.connections.append(record)
        return record

    @staticmethod
    def _refuse(record: BodhiConnection, status: int, ending: Ending, text: str) -> web.Response:
        record.status, record.ended = status, ending
        record.finished.set()
        return web.Response(status=status, text=text)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request)
        return self._refuse(record, 404, "not found", "Not Found")

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        return all(
            headers.get(name) and (wanted is None or headers[name] == wanted)
            for name, wanted in (("x-api-key", self.api_key), ("x-customer-id", self.customer_id))
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = self._new_record(request)
        if self.reject is not None:
            return self._refuse(record, self.reject, "rejected", REJECTIONS[self.reject])
        if not self._authorized(record.headers):
            return self._refuse(record, 401, "rejected", REJECTIONS[401])
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            return self._refuse(record, 400, "not a websocket", "Expected a WebSocket upgrade")
        await ws.prepare(request)
        self._open[ws] = record
        try:
            await self._converse(ws, record)
        finally:
            self._connection_over(ws, record)
        return ws

    async def _send(self, ws: web.WebSocketResponse, record: BodhiConnection, msg: dict) -> None:
        record.sent.append(msg)
        await ws.send_str(json.dumps(msg, ensure_ascii=False))

    async def _fail(
        self,
        ws: web.WebSocketResponse,
        record: BodhiConnection,
        error: BodhiError,
        ending: Ending = "error",
    ) -> None:
        """bodhi.md: errors arrive as a message and the server closes afterwards."""
        if error.code == 400:
            record.violations.append(error.message)
        await self._send(ws, record, error_message(error.kind, error.message, error.code))
        record.ended, record.closed_by = ending, "server"
        close = WSCloseCode.POLICY_VIOLATION if error.code < 500 else WSCloseCode.INTERNAL_ERROR
        await ws.close(code=close)

    async def _converse(self, ws: web.WebSocketResponse, record: BodhiConnection) -> None:
        loop = asyncio.get_running_loop()
        stream: _Stream | None = None
        while True:
            # The idle clock restarts on every client message; pings are answered inside
            # ws.receive() and do not restart it (the SDK sends silence as keepalive).
            try:
                async with asyncio.timeout_at(loop.time() + self.idle_timeout):
                    msg = await ws.receive()
            except TimeoutError:
                record.ended, record.closed_by = "idle timeout", "server"
                reason = f"no message for {self.idle_timeout:g} s"
                await ws.close(code=WSCloseCode.OK, message=reason.encode())
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                if not record.ended:  # not closed by stop()
                    record.violations.append('the connection closed before {"eof": 1}')
                    record.ended, record.closed_by = "client closed", "client"
                return
            try:
                if msg.type == WSMsgType.TEXT:
                    record.frames.append(Frame("text", len(msg.data), msg.data))
                    if stream is None:
                        stream = self._configure(record, msg.data)
                        continue
                    if msg.data == EOF_TEXT:
                        record.eof = True
                        for reply in await stream.end():
                            await self._send(ws, record, reply)
                        await self._await_client_close(ws, record)
                        return
                    raise unexpected_text(msg.data)
                record.frames.append(Frame("binary", len(msg.data)))
                if stream is None:
                    raise BodhiError(
                        "invalid_config",
                        f"the first message must be the text config, not {len(msg.data)} "
                        "bytes of binary audio",
                    )
                for reply in await stream.audio(msg.data):
                    await self._send(ws, record, reply)
                if self.error_after is not None and stream.seconds >= self.error_after:
                    error = BodhiError("internal_error", "Internal server error", 500)
                    await self._fail(ws, record, error, "error_after")
                    return
            except BodhiError as error:
                await self._fail(ws, record, error)
                return

    def _configure(self, record: BodhiConnection, text: str) -> _Stream:
        config, remarks = parse_config(text, self.models)
        record.config = config
        record.violations += remarks
        return _Stream(
            record,
            config,
            self.recognizers.new(config["sample_rate"], self.script, owner=record),
            call_id=str(uuid.uuid4()),
            hex_segment_ids=self.hex_segment_ids,
        )

    async def _await_client_close(self, ws: web.WebSocketResponse, record: BodhiConnection) -> None:
        """bodhi.md: after eos the client closes the socket; close it ourselves if it does not."""
        try:
            async with asyncio.timeout(self.eos_close_after):
                while True:
                    msg = await ws.receive()
                    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        record.ended = record.ended or "eos"
                        record.closed_by = record.closed_by or "client"
                        return
                    kind: Literal["text", "binary"] = (
                        "text" if msg.type == WSMsgType.TEXT else "binary"
                    )
                    text = msg.data if kind == "text" else None
                    record.frames.append(Frame(kind, len(msg.data), text))
                    record.violations.append(f"{kind} message after eos (ignored)")
        except TimeoutError:
            record.ended, record.closed_by = "eos", "server"
            await ws.close(code=WSCloseCode.OK)


def unexpected_text(text: str) -> BodhiError:
    """The error for a text message after the config that is not exactly {"eof": 1}."""
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if isinstance(message, dict) and "config" in message:
        return BodhiError("invalid_message", "a second config message is not allowed")
    return BodhiError(
        "invalid_message",
        f"after the config only binary audio and the text {EOF_TEXT} are allowed, not {text!r}",
    )
