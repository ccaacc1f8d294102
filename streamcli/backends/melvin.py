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
# The server's handler crashes (no export id) when eof arrives while a transcription task is in
# flight (melvin.md, "Server bug to survive"; real server src/websocket/stream.py, echo()). A
# transcription starts only when audio arrives and ends by sending a partial, so eof waits for
# the first partial after the last audio, at most EOF_GRACE_SECONDS (then no task is running).
EOF_GRACE_SECONDS = 2.0
# Audio sent well ahead of real time may still be queued at the server: a partial counts only
# once this long has passed after the last audio.
EOF_CATCH_UP_SECONDS = 1.0
# Consecutive finals can repeat a word cut at the window edge with the same start (melvin.md):
# the same text starting within this many seconds of the last final word is that word.
REPEATED_WORD_START_TOLERANCE = 0.005


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
        self._eof_earliest: float | None = None  # audio ended: a partial after this sends eof
        self._eof_due: float | None = None  # ...and eof goes at this time at the latest
        self._last_final_word: ev.Word | None = None
        self.export_id: str | None = None
        self.pre_auth_hint_given = False

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
        if self._first_audio_at is None:
            self._send_eof()  # no audio, no transcription
            return
        ahead = self.audio_seconds_sent - (now - self._first_audio_at)
        self._eof_earliest = now + (EOF_CATCH_UP_SECONDS if ahead > 0.5 else 0.0)
        self._eof_due = self._eof_earliest + EOF_GRACE_SECONDS

    def _send_eof(self) -> None:
        self._eof_due = self._eof_earliest = None
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
        partial = self._handle_text(text)
        # A partial is the last thing a transcription task does: once one arrives after the
        # last audio (and after the catch-up time), no task is left to crash the eof handling.
        if partial and self._eof_earliest is not None and now >= self._eof_earliest:
            self._send_eof()

    def _handle_text(self, text: str) -> bool:
        """Handle one server text frame; True when it was a partial."""
        stripped = text.strip()
        if EXPORT_ID.match(stripped):
            self.export_id = stripped
            self._emit_tail()
            self._finish("eof", export_id=stripped)
            return False
        if stripped in AUTH_FAILURES:
            self._fail(f"Melvin-ASR rejected the credentials: {stripped}", ev.AUTH)
            return False
        if stripped.startswith(WAITING_PREFIX):
            self._emit(ev.Status, state="waiting", message=stripped)
            return False
        if stripped == UNKNOWN_CONTROL:
            self._on_unknown_control()
            return False
        msg = self._parse_json_object(text)
        if msg is None:
            return False
        if "partial" in msg:
            self._on_partial(msg["partial"])
            return True
        if "result" in msg or "text" in msg:
            self._on_final(msg)
        else:
            self._emit(ev.Warning, message=f"ignored an unknown message with keys {sorted(msg)}")
        return False

    def _on_unknown_control(self) -> None:
        if self.api_key is not None and not self._eof_sent:
            # A server before v1.1.0-dev.2 has no auth: it takes our auth frame for an unknown
            # control message (real server v1.1.0-dev.0, src/websocket/stream.py, echo()).
            self.pre_auth_hint_given = True
            self._emit(
                ev.Warning,
                message=f"the server answered {UNKNOWN_CONTROL!r} to the auth message: it "
                "predates WebSocket auth (Melvin-ASR before v1.1.0-dev.2); use --no-auth",
            )
            return
        self._emit(ev.Warning, message=f"the server answered: {UNKNOWN_CONTROL}")

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
        if not text:
            return
        self._tail = _tail_after(self._tail, text)
        if words and self._repeats_last_final_word(words[0]):
            words = words[1:]
            text = " ".join(w.word for w in words)
            if not text:
                return
        if words:
            self._last_final_word = words[-1]
        self._emit(
            ev.Final,
            text=text,
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            words=words,
        )

    def _repeats_last_final_word(self, word: ev.Word) -> bool:
        last = self._last_final_word
        return (
            last is not None
            and last.word == word.word
            and abs(last.start - word.start) <= REPEATED_WORD_START_TOLERANCE
        )

    def _emit_tail(self) -> None:
        # The partials repeat a word cut at the window edge just like the finals do (the
        # server's own "doubled word" workaround compares " word" with "word" and never fires).
        last = self._last_final_word
        tail = self._tail.split()
        if last is not None and tail and tail[0] == last.word:
            self._tail = " ".join(tail[1:])
        super()._emit_tail()

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


def _tail_after(partial: str, final_text: str) -> str:
    """What of the last partial a final did not confirm: a partial lists every word after the
    previous final, so a final that confirms its beginning leaves the rest as the tail."""
    partial_words, final_words = partial.split(), final_text.split()
    if final_words and partial_words[: len(final_words)] == final_words:
        return " ".join(partial_words[len(final_words) :])
    return ""


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
