"""Phebi-Live realtime transcription + emotion protocol (``shared/protocols/phebi.md``), sans-I/O.

Wire summary: ``ws(s)://HOST/sockets/live/{project}/{session}/{speaker}`` (each segment
percent-encoded) with the header ``Subscription: <key>``. The client sends a 44-byte RIFF/WAVE
header for 16 kHz/16-bit/mono as its own first binary frame, then raw PCM in binary frames, then
the one-byte binary frame ``b"\\x01"``. The server answers JSON objects that may carry any of
``Transcription``, ``InterimTranscription``, ``Emotions`` and ``Error``, and closes after the
last results.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from streamcli import events as ev
from streamcli.audio.wav import STREAMING_SIZE, wav_header
from streamcli.backends.base import Backend, ConnectRequest, as_float
from streamcli.exit import AuthError, ConnectError, ServerError, StreamcliError, UsageError

SAMPLE_RATE = 16000
# The live length is unknown: 0xFFFFFFFF as phebi.md suggests ("use 0xFFFFFFFF or a large value").
RIFF_HEADER = wav_header(SAMPLE_RATE, channels=1, bits=16, data_size=STREAMING_SIZE)
# Without this single byte the server never sends the final transcription (phebi.md).
EOF_FRAME = b"\x01"
# The order of ``Emotions[].Scores`` (phebi.md).
EMOTION_NAMES = ("strong", "calm", "anxious", "happy", "sad")
# Close code of a server that failed while finishing: an error even after the end of the audio.
# Fields that older servers send and that carry nothing for us (phebi.md: ``ByteLength``).
IGNORED_FIELDS = frozenset({"ByteLength"})


def live_url(url: str, project: str, session: str, speaker: str) -> str:
    """The socket URL; every segment is one path segment, whatever it contains ("/", " ", "%").
    A query in ``url`` (``?token=…`` for a proxy) stays the query."""
    segments = "/".join(quote(s, safe="") for s in (project, session, speaker))
    p = urlsplit(url)
    path = f"{p.path.rstrip('/')}/sockets/live/{segments}"
    return urlunsplit((p.scheme, p.netloc, path, p.query, ""))


class PhebiBackend(Backend):
    name = "phebi"
    sample_rate = SAMPLE_RATE
    encoding = "s16le"

    def __init__(
        self,
        url: str,
        project: str,
        session: str,
        speaker: str,
        subscription_key: str,
        *,
        speaker_label: str | None = None,
    ) -> None:
        # ``speaker`` is Phebi's role in the URL and, by default, the events' speaker;
        # ``speaker_label`` renames the stream in events ("" leaves events unlabelled).
        super().__init__(speaker=speaker if speaker_label is None else speaker_label or None)
        for option, value in (
            ("project", project),
            ("session", session),
            ("speaker", speaker),
            ("subscription key", subscription_key),
        ):
            if not value:
                raise UsageError(f"Phebi-Live needs a non-empty {option}")
        self.url = url
        self.project = project
        self.session = session
        self.role = speaker
        self.subscription_key = subscription_key
        self._eof_sent = False

    # ---- connection ---------------------------------------------------------------------------
    def connect_request(self) -> ConnectRequest:
        return ConnectRequest(
            url=live_url(self.url, self.project, self.session, self.role),
            headers={"Subscription": self.subscription_key},
            secrets=(self.subscription_key,),
        )

    def handshake_error(self, status: int, message: str) -> StreamcliError:
        detail = f"HTTP {status}{': ' + message if message else ''}"
        if status in (401, 403):
            return AuthError(f"Phebi-Live rejected the Subscription key ({detail})")
        if status == 404:
            return ServerError(
                f"Phebi-Live has no socket at this URL ({detail}); "
                "check the host, project, session and speaker"
            )
        if status >= 500:
            return ConnectError(f"Phebi-Live refused the connection ({detail})")
        return ServerError(f"Phebi-Live refused the connection ({detail})")

    # ---- audio out ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        # Both official examples stream a .wav file from byte 0: the header comes first. A frame
        # of its own keeps audio frames pure PCM; the server reads one byte stream (phebi.md).
        self._send(RIFF_HEADER)

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
        handled = False
        for key, handler in self._handlers():
            if key in msg:
                handled = True
                handler(msg[key])
                if self.finished:
                    return
        if msg and not handled and not IGNORED_FIELDS.intersection(msg):
            self._emit(ev.Warning, message=f"ignored an unknown message with keys {sorted(msg)}")

    def _handlers(self) -> tuple[tuple[str, Callable[[Any], None]], ...]:
        # One message may hold several fields: the final words first, then the new interim text
        # (which follows them), then emotions; an error last, since it ends the session.
        return (
            ("Transcription", self._on_transcription),
            ("InterimTranscription", self._on_interim),
            ("Emotions", self._on_emotions),
            ("Error", self._on_error),
        )

    def _on_transcription(self, items: Any) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            self._emit(ev.Warning, message="ignored a Transcription that is not a list")
            return
        texts: list[str] = []
        words: list[ev.Word] = []
        bad = 0
        for item in items:
            text = item.get("Text") if isinstance(item, dict) else None
            if not isinstance(text, str):
                bad += 1
                continue
            if not text.strip():
                continue
            texts.append(text.strip())
            word, ok = _word(text.strip(), item)
            if not ok:
                bad += 1
            if word is not None:
                words.append(word)
        if bad:
            self._emit(ev.Warning, message=f"ignored bad parts of {bad} Transcription item(s)")
        if not texts:
            return
        self._tail = ""
        self._emit(
            ev.Final,
            text=" ".join(texts),
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            words=tuple(words),
        )

    def _on_interim(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            self._emit(ev.Warning, message="ignored an InterimTranscription that is not a string")
            return
        text = " ".join(value.split())
        if not text:
            return
        self._tail = text
        self._emit(ev.Partial, text=text)

    def _on_emotions(self, items: Any) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            self._emit(ev.Warning, message="ignored Emotions that are not a list")
            return
        skipped = 0
        for item in items:
            if not self._emit_emotion(item):
                skipped += 1
        if skipped:
            self._emit(ev.Warning, message=f"ignored {skipped} malformed Emotions item(s)")

    def _emit_emotion(self, item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        confidence = as_float(item.get("Confidence"))
        raw_scores = item.get("Scores")
        if confidence is None or not isinstance(raw_scores, list):
            return False
        scores = [s for s in map(as_float, raw_scores) if s is not None]
        if len(scores) != len(raw_scores) or len(scores) != len(EMOTION_NAMES):
            return False
        # phebi.md: "Confidence is to be multiplied with each score".
        weighted = {
            name: round(score * confidence, 6)
            for name, score in zip(EMOTION_NAMES, scores, strict=True)
        }
        # One socket per speaker: the stream's label names the speaker. The numeric Speaker
        # field (always 0 without diarization) is only a fallback for an unlabelled stream.
        speaker, number = self.speaker, item.get("Speaker")
        if speaker is None and isinstance(number, int | str) and not isinstance(number, bool):
            speaker = str(number)
        self._events.append(
            ev.Emotion(
                backend=self.name,
                speaker=speaker,
                scores=weighted,
                position=as_float(item.get("Position")),
                confidence=confidence,
            )
        )
        return True

    def _on_error(self, value: Any) -> None:
        if value is None or value == "":
            return
        message = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        self._fail(f"Phebi-Live reported an error: {message.strip()}", ev.SERVER)

    # ---- the end ------------------------------------------------------------------------------
    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        # After b"\x01" the server sends the last results and closes (phebi.md).
        self._closed_after_end(code, reason, self._eof_sent, "closed")


def _word(text: str, item: dict[str, Any]) -> tuple[ev.Word | None, bool]:
    """A timed word when ``Position`` and ``Duration`` are numbers; absent times leave the word
    untimed (any field may be absent), times of the wrong type also mark the item malformed."""
    position, duration = item.get("Position"), item.get("Duration")
    if position is None or duration is None:
        return None, True
    start, length = as_float(position), as_float(duration)
    if start is None or length is None:
        return None, False
    return ev.Word(word=text, start=round(start, 6), end=round(start + length, 6)), True
