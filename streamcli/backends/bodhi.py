"""Navana Bodhi streaming ASR protocol (``shared/protocols/bodhi.md``), sans-I/O.

Wire summary: headers ``x-api-key`` and ``x-customer-id`` (a UUID); one text config frame
``{"config": {...}}`` first, then raw s16le mono PCM in binary frames at the configured rate
(no WAV header), then the text ``{"eof": 1}``. The server answers ``partial`` and ``complete``
JSON objects and marks its last one with ``"eos": true``; errors are ``{"error", "message",
"code"}`` objects followed by a close. The server drops a connection after 15 s without any
client message, so the client sends 100 ms of silence when it has been quiet for a while.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from streamcli import events as ev
from streamcli.backends.base import INTERNAL_ERROR_CLOSE, Backend, ConnectRequest, as_float
from streamcli.exit import AuthError, ConnectError, ServerError, StreamcliError, UsageError

DEFAULT_URL = "wss://bodhi.navana.ai"
DEFAULT_MODEL = "hi-banking-v2-8khz"
DEFAULT_SAMPLE_RATE = 8000
DEFAULT_HOTWORD_SCORE = 1.5
# The server closes after 15 s without a client message (bodhi.md); stay well below that.
DEFAULT_KEEPALIVE_AFTER = 3.0
KEEPALIVE_SECONDS = 0.1  # one 100 ms frame of silence, the recommended chunk length
# Exactly this string: the vendor's example and SDK send it (json.dumps default separators).
EOF_FRAME = '{"eof": 1}'
# The server clamps endpoint_silence_duration to this range (bodhi.md).
ENDPOINT_SILENCE_RANGE = (0.44, 1.2)

# What the vendor says each refusal means (bodhi.md, "Connection"); used for the handshake
# status and for the same code in an error message.
AUTH_MEANINGS = {
    401: "invalid API key or customer ID",
    402: "insufficient balance",
    403: "the customer has been deactivated",
}
BAD_REQUEST_MEANING = "malformed config, invalid transaction_id or unavailable model"

UUID_FORM = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
NUMBER_FORM = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def check_customer_id(value: str) -> str:
    """The customer id, stripped; a UsageError unless it is a UUID (the SDK checks it too).

    Only the canonical 8-4-4-4-12 hex form is accepted: it goes into a header verbatim, and
    the other spellings ``uuid.UUID`` tolerates (braces, ``urn:uuid:``) would not match.
    """
    stripped = value.strip()
    if not UUID_FORM.match(stripped):
        raise UsageError(
            f"the Navana Bodhi customer id must be a UUID "
            f"(like 123e4567-e89b-12d3-a456-426614174000), not {value!r}"
        )
    return stripped


def parse_hotword(spec: str) -> dict[str, Any]:
    """``PHRASE[:SCORE]`` -> ``{"phrase": PHRASE, "score": SCORE}`` (default score 1.5).

    The score is what follows the *last* ``:`` when that looks like a number, so a phrase may
    contain ``:`` as long as its last ``:`` is followed by a non-number (``"ratio:x"`` is a
    phrase; ``"10:30"`` is ``10`` with score 30, write ``10:30:1.5`` for the time). A score must
    be a positive finite number; an empty one after a final ``:`` is refused as a typo.
    """
    phrase, sep, tail = spec.rpartition(":")
    if not sep:
        phrase, score = spec, DEFAULT_HOTWORD_SCORE
    elif not tail.strip():
        raise UsageError(f"hotword {spec!r}: missing score after ':' (use PHRASE or PHRASE:SCORE)")
    elif NUMBER_FORM.match(tail.strip()):
        score = float(tail)
        if not math.isfinite(score) or score <= 0:
            raise UsageError(f"hotword {spec!r}: the score must be a positive number")
    else:
        phrase, score = spec, DEFAULT_HOTWORD_SCORE
    phrase = phrase.strip()
    if not phrase:
        raise UsageError(f"hotword {spec!r}: the phrase is empty")
    return {"phrase": phrase, "score": score}


def _hotword(value: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, str):
        return parse_hotword(value)
    if isinstance(value, Mapping):
        phrase, score = value.get("phrase"), as_float(value.get("score", DEFAULT_HOTWORD_SCORE))
        if isinstance(phrase, str) and phrase.strip() and score is not None and score > 0:
            return {"phrase": phrase.strip(), "score": score}
    raise UsageError(f"invalid hotword {value!r}: expected PHRASE[:SCORE]")


def _error_code(value: Any) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, str) and value else None


class BodhiBackend(Backend):
    name = "bodhi"
    encoding = "s16le"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str,
        customer_id: str,
        model: str = DEFAULT_MODEL,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        parse_number: bool | None = None,
        exclude_partial: bool | None = None,
        hotwords: Iterable[str | Mapping[str, Any]] = (),
        aux: bool | None = None,
        endpoint_silence: float | None = None,
        at_start_lid: bool | None = None,
        transliterate: bool | None = None,
        transaction_id: str | None = None,
        speaker: str | None = None,
        keepalive_after: float | None = DEFAULT_KEEPALIVE_AFTER,
    ) -> None:
        super().__init__(speaker=speaker)
        if not api_key:
            raise UsageError("Navana Bodhi needs an API key")
        if not model:
            raise UsageError("Navana Bodhi needs a model name")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise UsageError(f"invalid sample rate {sample_rate!r}")
        if endpoint_silence is not None and not (
            math.isfinite(endpoint_silence) and endpoint_silence > 0
        ):
            raise UsageError(f"invalid endpoint silence {endpoint_silence!r}: seconds > 0")
        self.url = url
        self.api_key = api_key
        self.customer_id = check_customer_id(customer_id)
        self.model = model
        self.sample_rate = sample_rate
        self.parse_number = parse_number
        self.exclude_partial = exclude_partial
        self.hotwords = [_hotword(h) for h in hotwords]
        self.aux = aux
        self.endpoint_silence = endpoint_silence
        self.at_start_lid = at_start_lid
        self.transliterate = transliterate
        if transaction_id is not None and not UUID_FORM.match(transaction_id):
            # The server answers 400 to an invalid transaction_id (bodhi.md): say it first.
            raise UsageError(f"the transaction id must be a UUID, not {transaction_id!r}")
        self.transaction_id = transaction_id or str(uuid.uuid4())
        self.keepalive_after = keepalive_after if keepalive_after and keepalive_after > 0 else None
        self.session_info = {"transaction_id": self.transaction_id, "model": self.model}
        self.call_id: str | None = None
        self._started = False
        self._eof_sent = False
        self._last_sent: float | None = None

    # ---- connection ---------------------------------------------------------------------------
    def connect_request(self) -> ConnectRequest:
        return ConnectRequest(
            url=self.url,
            headers={"x-api-key": self.api_key, "x-customer-id": self.customer_id},
            secrets=(self.api_key,),  # the customer id identifies, it does not authenticate
        )

    def handshake_error(self, status: int, message: str) -> StreamcliError:
        if status == 401:
            return AuthError(
                "Navana Bodhi rejected the credentials: invalid API key or customer ID (HTTP 401)"
            )
        if status == 402:
            return AuthError("Navana Bodhi refused the session: insufficient balance (HTTP 402)")
        if status == 403:
            return AuthError(
                "Navana Bodhi refused the session: the customer has been deactivated (HTTP 403)"
            )
        detail = f": {message}" if message else ""
        if status == 400:
            return UsageError(f"Navana Bodhi rejected the request (HTTP 400){detail}")
        if status >= 500:
            return ConnectError(f"Navana Bodhi is unavailable (HTTP {status}){detail}")
        return ServerError(f"Navana Bodhi refused the connection (HTTP {status}){detail}")

    def config_message(self) -> str:
        """The one config frame: required keys first, optional keys only when set (bodhi.md)."""
        config: dict[str, Any] = {
            "sample_rate": self.sample_rate,
            "transaction_id": self.transaction_id,
            "model": self.model,
        }
        optional: tuple[tuple[str, Any], ...] = (
            ("parse_number", self.parse_number),
            ("exclude_partial", self.exclude_partial),
            ("hotwords", self.hotwords or None),
            ("aux", self.aux),
            ("endpoint_silence_duration", self.endpoint_silence),
            ("at_start_lid", self.at_start_lid),  # SDK 1.4.0
            ("transliterate", self.transliterate),  # SDK 1.4.0
        )
        config.update((key, value) for key, value in optional if value is not None)
        # Default separators, as the vendor's example and SDK serialize it.
        return json.dumps({"config": config})

    # ---- audio out ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        if self._started:
            return  # a second config is an error on the server (bodhi.md)
        self._started = True
        self._send_frame(self.config_message(), now)
        low, high = ENDPOINT_SILENCE_RANGE
        if self.endpoint_silence is not None and not low <= self.endpoint_silence <= high:
            self._emit(
                ev.Warning,
                message=f"Navana Bodhi clamps the endpoint silence {self.endpoint_silence:g} s "
                f"to {low:g}–{high:g} s",
            )

    def send_audio(self, data: bytes, now: float) -> None:
        if not self._started or self._eof_sent or self.finished or not data:
            return
        self._send_frame(data, now)
        self.audio_seconds_sent += len(data) / 2 / self.sample_rate

    def end_audio(self, now: float) -> None:
        if self._eof_sent or self.finished:
            return
        self._eof_sent = True
        self._send_frame(EOF_FRAME, now)

    def _send_frame(self, frame: str | bytes, now: float) -> None:
        self._send(frame)
        self._last_sent = now

    def silence_frame(self) -> bytes:
        return bytes(2 * round(self.sample_rate * KEEPALIVE_SECONDS))

    def next_deadline(self) -> float | None:
        if self.keepalive_after is None or self._last_sent is None:
            return None
        if self._eof_sent or self.finished:
            return None
        return self._last_sent + self.keepalive_after

    def tick(self, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            # Silence, not a ping: the server only counts messages (the SDK does the same).
            self._send_frame(self.silence_frame(), now)

    # ---- server in ----------------------------------------------------------------------------
    def receive_text(self, text: str, now: float) -> None:
        if self.finished:
            return
        msg = self._parse_json_object(text)
        if msg is None:
            return
        if msg.get("error"):
            self._on_error(msg)
            return
        if isinstance(msg.get("call_id"), str) and msg["call_id"]:
            self.call_id = msg["call_id"]
        kind = msg.get("type")
        if kind == "partial":
            self._on_partial(msg.get("text"))
        elif kind == "complete":
            self._on_complete(msg)
        elif kind is not None:
            self._emit(ev.Warning, message=f"ignored a message of unknown type {_clip_repr(kind)}")
        elif msg.get("eos") is not True:
            self._emit(ev.Warning, message=f"ignored a message without a type: keys {sorted(msg)}")
        if msg.get("eos") is True:
            self._emit_tail()
            extra = {"transaction_id": self.transaction_id}
            if self.call_id:
                extra["call_id"] = self.call_id
            self._finish("eos", **extra)

    def _on_partial(self, value: Any) -> None:
        if not isinstance(value, str):
            self._emit(ev.Warning, message="ignored a partial whose text is not a string")
            return
        text = " ".join(value.split())
        if not text:
            return
        self._tail = text
        self._emit(ev.Partial, text=text)

    def _on_complete(self, msg: dict[str, Any]) -> None:
        value = msg.get("text")
        if not isinstance(value, str):
            self._emit(ev.Warning, message="ignored a complete whose text is not a string")
            return
        self._tail = ""
        text = " ".join(value.split())
        if not text:
            return  # empty completes occur; only --raw keeps them (bodhi.md)
        meta = msg.get("segment_meta")
        meta = meta if isinstance(meta, dict) else {}
        offset = as_float(meta.get("start_time"))
        words, bad = _words(meta.get("words"), offset or 0.0)
        if bad:
            self._emit(ev.Warning, message=f"ignored {bad} malformed word(s) in a complete")
        start: float | None
        end: float | None
        if words:
            start, end = words[0].start, words[-1].end
        else:
            start, end = offset, _last_token_end(meta.get("timestamps"), offset)
        self._emit(ev.Final, text=text, start=start, end=end, words=words)

    def _on_error(self, msg: dict[str, Any]) -> None:
        code = _error_code(msg.get("code"))
        error = msg.get("error")
        server_text = msg.get("message")
        server_text = server_text.strip() if isinstance(server_text, str) else ""
        label = error if isinstance(error, str) else "error"
        if code in AUTH_MEANINGS:
            detail = f" ({server_text})" if server_text else ""
            self._fail(
                f"Navana Bodhi refused the session: {AUTH_MEANINGS[code]} (code {code}){detail}",
                ev.AUTH,
                code=code,
            )
        elif code == 400:
            self._fail(
                f"Navana Bodhi rejected the request: {server_text or BAD_REQUEST_MEANING} "
                "(code 400)",
                ev.USAGE,
                code=code,
            )
        else:
            code_text = f" (code {code})" if code is not None else ""
            self._fail(
                f"Navana Bodhi reported {label}{code_text}: {server_text or 'no message'}",
                ev.SERVER,
                code=code,
            )

    # ---- the end ------------------------------------------------------------------------------
    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        if self.finished:
            return
        self._emit_tail()
        detail = f"code {code}{', ' + reason if reason else ''}" if code else "no close code"
        if self._eof_sent:
            self._fail(
                f"the server closed the connection after eof without its last message ({detail})",
                ev.SERVER if code == INTERNAL_ERROR_CLOSE else ev.CONNECTION,
            )
        else:
            self._fail(
                f"the server closed the connection before the end of the audio ({detail})",
                ev.CONNECTION,
            )


def _words(items: Any, offset: float) -> tuple[tuple[ev.Word, ...], int]:
    """Words of a complete segment on the stream timeline (their times are segment-relative),
    and how many entries were malformed. A word without times is left out silently: older
    servers sent only ``word`` and ``confidence``."""
    if items is None:
        return (), 0
    if not isinstance(items, list):
        return (), 1
    out, bad = [], 0
    for item in items:
        word = item.get("word") if isinstance(item, dict) else None
        if not isinstance(word, str):
            bad += 1
            continue
        start, end = item.get("start_time"), item.get("end_time")
        if start is None or end is None:
            continue
        start, end = as_float(start), as_float(end)
        if start is None or end is None:
            bad += 1
            continue
        if word.strip():
            out.append(
                ev.Word(
                    word=word.strip(),
                    start=round(offset + start, 6),
                    end=round(offset + end, 6),
                    confidence=as_float(item.get("confidence")),
                )
            )
    return tuple(out), bad


def _last_token_end(timestamps: Any, offset: float | None) -> float | None:
    """Without words, the segment ends at its last token (``timestamps`` align with tokens)."""
    if offset is None or not isinstance(timestamps, list) or not timestamps:
        return None
    last = as_float(timestamps[-1])
    return None if last is None else round(offset + last, 6)


def _clip_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
