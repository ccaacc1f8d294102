"""Melvin-ASR streaming protocol (``shared/protocols/melvin.md``), sans-I/O.

Wire summary: optional auth text frame ``{"Authorization":"<key>"}`` (no ack on success), then
binary s16le 16 kHz mono frames of even length, then the text ``eof``; the server answers a
plain 32-hex export id and closes 1000. Partials and finals are indent=2 JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from streamcli import events as ev
from streamcli.backends.base import Backend, ConnectRequest, as_float

# The three exact rejection strings (melvin.md, "Authentication").
AUTH_FAILURES = (
    "Initial message was not text and therefore did not match the expected auth format",
    "Initial websocket message contained invalid json",
    "Provided api key is invalid",
)
WAITING_PREFIX = "No transcription workers available"
UNKNOWN_CONTROL = "control message unknown"
EXPORT_ID = re.compile(r"^[0-9a-f]{32}$")
EOF_FRAME = "eof"
# Sending eof right after audio that went out much faster than real time can crash the
# server's handler (melvin.md, "Server bug to survive"): wait this long after the audio.
EOF_GRACE_SECONDS = 1.0


def normalize_text(text: str) -> str:
    """Whisper keeps leading spaces and joins words with " ": fold runs of spaces for display."""
    return " ".join(text.split())


class MelvinBackend(Backend):
    name = "melvin"
    sample_rate = 16000
    encoding = "s16le"

    def __init__(self, url: str, api_key: str | None = None, *, speaker: str | None = None) -> None:
        super().__init__(speaker=speaker)
        self.url = url
        self.api_key = api_key
        self._first_audio_at: float | None = None
        self._eof_sent = False
        self._eof_due: float | None = None
        self.export_id: str | None = None

    def connect_request(self) -> ConnectRequest:
        parts = urlsplit(self.url)
        url = self.url if parts.path else self.url.rstrip("/") + "/"
        return ConnectRequest(url=url, secrets=(self.api_key,) if self.api_key else ())

    def start(self, now: float) -> None:
        if self.api_key is not None:
            self._send(json.dumps({"Authorization": self.api_key}, separators=(",", ":")))

    def send_audio(self, data: bytes, now: float) -> None:
        if len(data) % 2:
            raise ValueError("Melvin frames must have an even byte length")
        if self._eof_sent or self._eof_due is not None or not data:
            return
        if self._first_audio_at is None:
            self._first_audio_at = now
        self._send(data)
        self.audio_seconds_sent += len(data) / 2 / self.sample_rate

    def end_audio(self, now: float) -> None:
        if self._eof_sent or self._eof_due is not None or self.finished:
            return
        elapsed = 0.0 if self._first_audio_at is None else now - self._first_audio_at
        ahead = self.audio_seconds_sent - elapsed
        if ahead > 0.5:
            self._eof_due = now + EOF_GRACE_SECONDS
        else:
            self._send_eof()

    def _send_eof(self) -> None:
        self._eof_due = None
        self._eof_sent = True
        self._send(EOF_FRAME)

    def next_deadline(self) -> float | None:
        return self._eof_due

    def tick(self, now: float) -> None:
        if self._eof_due is not None and now >= self._eof_due and not self.finished:
            self._send_eof()

    def receive_text(self, text: str, now: float) -> None:
        if self.finished:
            return
        # A server frame does not end the eof race window: it may answer audio sent long ago
        # (or be a seat reminder), so only the grace period after the last audio counts.
        self._handle_text(text)

    def _handle_text(self, text: str) -> None:
        stripped = text.strip()
        if EXPORT_ID.match(stripped):
            self.export_id = stripped
            self._emit_tail()
            self._finish("eof", export_id=stripped)
            return
        if stripped in AUTH_FAILURES:
            self._fail(f"Melvin-ASR rejected the credentials: {stripped}", ev.AUTH)
            return
        if stripped.startswith(WAITING_PREFIX):
            self._emit(ev.Status, state="waiting", message=stripped)
            return
        if stripped == UNKNOWN_CONTROL:
            self._emit(ev.Warning, message=f"the server answered: {stripped}")
            return
        msg = self._parse_json_object(text)
        if msg is None:
            return
        if "partial" in msg:
            self._on_partial(msg["partial"])
        elif "result" in msg or "text" in msg:
            self._on_final(msg)
        else:
            self._emit(ev.Warning, message=f"ignored an unknown message with keys {sorted(msg)}")

    def _on_partial(self, raw: Any) -> None:
        if not isinstance(raw, str):
            self._emit(ev.Warning, message="ignored a partial whose text is not a string")
            return
        text = normalize_text(raw)
        if not text:
            return  # {"partial": ""} is frequent and does not mean "clear" (melvin.md)
        self._tail = raw
        self._emit(ev.Partial, text=text)

    def _on_final(self, msg: dict[str, Any]) -> None:
        words = tuple(_words(msg.get("result")))
        raw_text = msg.get("text")
        text = normalize_text(raw_text) if isinstance(raw_text, str) else ""
        if not text:
            text = " ".join(w.word for w in words)
        self._tail = ""
        if not text:
            return
        self._emit(
            ev.Final,
            text=text,
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            words=words,
        )

    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        if self.finished:
            return
        self._emit_tail()
        if self._eof_sent:
            self._fail(
                f"the server closed the connection (code {code}) without an export id after eof "
                "(Melvin-ASR drops the export when its handler crashes)",
                ev.SERVER,
            )
        else:
            self._fail(
                f"the server closed the connection (code {code}) before the end of the audio",
                ev.CONNECTION,
            )


def _words(result: Any) -> list[ev.Word]:
    if not isinstance(result, list):
        return []
    out = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            continue
        start, end = as_float(item.get("start")), as_float(item.get("end"))
        if start is None or end is None:
            continue
        conf = as_float(item.get("conf"))
        out.append(
            ev.Word(
                word=item["word"].strip(), start=round(start, 6), end=round(end, 6), confidence=conf
            )
        )
    return out
