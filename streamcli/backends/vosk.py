"""Vosk server protocol (alphacep/vosk-server; ``shared/protocols/bodhi.md``, "Vosk"), sans-I/O.

Wire summary: one text config frame ``{"config": {"sample_rate": N}}``, then raw s16le mono PCM
in binary frames, then the text ``{"eof" : 1}``. The server answers every audio frame with one
``{"partial": ...}`` or ``{"result": [...], "text": ...}`` object, answers eof with the final
result and closes. The client never waits for those answers before sending the next chunk.
"""

from __future__ import annotations

import json
from typing import Any

from streamcli import events as ev
from streamcli.backends.base import Backend, ConnectRequest, as_float
from streamcli.exit import UsageError

DEFAULT_URL = "ws://localhost:2700"
DEFAULT_SAMPLE_RATE = 16000
# The server compares the text frame with this exact string (spaces included); any other
# spelling, e.g. Bodhi's '{"eof": 1}', is fed to the recognizer as audio (bodhi.md, "Vosk").
EOF_FRAME = '{"eof" : 1}'


class VoskBackend(Backend):
    name = "vosk"
    encoding = "s16le"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        *,
        speaker: str | None = None,
    ) -> None:
        super().__init__(speaker=speaker)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise UsageError(f"invalid sample rate {sample_rate!r}")
        self.url = url
        self.sample_rate = sample_rate
        self._eof_sent = False

    def connect_request(self) -> ConnectRequest:
        return ConnectRequest(url=self.url)

    def config_message(self) -> str:
        return json.dumps({"config": {"sample_rate": self.sample_rate}})

    # ---- audio out ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        self._send(self.config_message())

    def send_audio(self, data: bytes, now: float) -> None:
        if self._eof_sent or self.finished or not data:
            return
        self._send(data)
        self.audio_seconds_sent += len(data) / 2 / self.sample_rate

    def end_audio(self, now: float) -> None:
        if self._eof_sent or self.finished:
            return
        self._eof_sent = True
        self._send(EOF_FRAME)

    # ---- server in ----------------------------------------------------------------------------
    def receive_text(self, text: str, now: float) -> None:
        if self.finished:
            return
        msg = self._parse_json_object(text)
        if msg is None:
            return
        if "partial" in msg:
            self._on_partial(msg["partial"])
        elif "result" in msg or "text" in msg:
            self._on_result(msg)
        else:
            self._emit(ev.Warning, message=f"ignored an unknown message with keys {sorted(msg)}")

    def _on_partial(self, value: Any) -> None:
        if not isinstance(value, str):
            self._emit(ev.Warning, message="ignored a partial whose text is not a string")
            return
        text = " ".join(value.split())
        if not text:
            return  # the answer to a chunk that changed nothing
        self._tail = text
        self._emit(ev.Partial, text=text)

    def _on_result(self, msg: dict[str, Any]) -> None:
        words, bad = _words(msg.get("result"))
        if bad:
            self._emit(ev.Warning, message=f"ignored {bad} malformed word(s) in a result")
        raw_text = msg.get("text")
        if raw_text is not None and not isinstance(raw_text, str):
            self._emit(ev.Warning, message="ignored a result whose text is not a string")
            return
        text = " ".join((raw_text or "").split()) or " ".join(w.word for w in words)
        self._tail = ""  # a result settles the utterance, even an empty one
        if not text:
            return  # {"text": ""}: silence
        self._emit(
            ev.Final,
            text=text,
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            words=words,
        )

    # ---- the end ------------------------------------------------------------------------------
    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        # The server answers eof with the final result, then ends its handler (a close).
        self._closed_after_end(code, reason, self._eof_sent, "eof")


def _words(items: Any) -> tuple[tuple[ev.Word, ...], int]:
    """Vosk's ``result`` list -> words, and how many entries were malformed."""
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
        start, end = as_float(item.get("start")), as_float(item.get("end"))
        if start is None or end is None:
            bad += 1
            continue
        if word.strip():
            conf = as_float(item.get("conf"))
            out.append(ev.Word(word.strip(), round(start, 6), round(end, 6), conf))
    return tuple(out), bad
