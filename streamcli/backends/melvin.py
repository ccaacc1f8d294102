"""Melvin-ASR streaming protocol (``shared/protocols/melvin.md``), sans-I/O.

Wire summary: optional auth text frame ``{"Authorization":"<key>"}`` (no ack on success), then
binary s16le 16 kHz mono frames of even length, then the text ``eof``; the server answers a
plain 32-hex export id and closes 1000. Partials and finals are indent=2 JSON.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
# The end of a stream, around two bugs of the real server (src/websocket/stream.py, echo()):
# - eof while a transcription task is in flight crashes the handler: no export id (melvin.md,
#   "Server bug to survive").
# - a transcription starts only when audio arrives while none is running, so the last second
#   of audio sent quickly (or the last frame of a real-time stream) may never be transcribed.
# A task's last act is sending a partial, and echo() answers a text without "eof" with
# "control message unknown" once it has read everything before it. So the backend holds back
# the latest audio frame; at the end it sends SYNC_FRAME, and once the server answered and is
# idle (the next partial, or EOF_GRACE_SECONDS without one) and RETRIGGER_SECONDS have passed
# since the last transcription, it sends the held frame (which starts one more transcription)
# and SYNC_FRAME again; when that is answered and idle, eof. A server that never answers the
# probe gets what is left SYNC_TIMEOUT_SECONDS after asking (or after its last result: a server
# still sending results is working through a backlog, not ignoring the probe).
SYNC_FRAME = "sync"
EOF_GRACE_SECONDS = 2.0
RETRIGGER_SECONDS = 1.0
SYNC_TIMEOUT_SECONDS = 10.0
# Waiting for a worker seat (melvin.md, "No free worker seat"; real server
# src/websocket/websockets_server.py, handle_new_client): the server sends WAITING_PREFIX… right
# after auth and every 10 s, reads nothing meanwhile, and says nothing when it grants a seat.
# Whatever the client sends while waiting arrives as one burst once seated, which meets the eof
# race above. So a client told to wait holds its audio (``holding``) and sends SEAT_PROBE: only
# a seated handler (echo()) reads it, after the frames sent before it, and answers "control
# message unknown" -- that answer is the seat. A wait longer than ``seat_timeout`` fails
# (a timeout, not a server failure: the server is busy, not broken).
SEAT_PROBE = "seat"
DEFAULT_SEAT_TIMEOUT = 300.0
# Consecutive finals can repeat a word cut at the window edge with the same start (melvin.md):
# the same text starting within this many seconds of the last final word is that word.
REPEATED_WORD_START_TOLERANCE = 0.005
# How many of the last final words a repeating tail is compared with.
MAX_TAIL_OVERLAP_WORDS = 200


def normalize_text(text: str) -> str:
    """Whisper keeps leading spaces and joins words with " ": fold runs of spaces for display."""
    return " ".join(text.split())


class MelvinBackend(Backend):
    name = "melvin"
    sample_rate = 16000
    encoding = "s16le"

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        speaker: str | None = None,
        seat_timeout: float = DEFAULT_SEAT_TIMEOUT,
    ) -> None:
        super().__init__(speaker=speaker)
        self.url = url
        self.api_key = api_key
        self.seat_timeout = seat_timeout
        # The seat: "" (never told to wait, or seated without a word), "waiting" (told to
        # wait: audio held, SEAT_PROBE sent), "seated" (the probe was answered).
        self._seat = ""
        self._waiting_since: float | None = None
        self._end_deferred = False  # end_audio() came while waiting: done once seated
        # What each "control message unknown" answers, in the order the texts were sent.
        self._probes: deque[str] = deque()
        self._first_audio_at: float | None = None
        self._eof_sent = False
        self._held: bytes | None = None  # the latest audio frame, sent at the end (see above)
        # The end: "" while streaming; "sync" (probe sent); "idle" (answered: waiting for the
        # next partial or the grace); "retrigger" (idle: waiting to send the held frame).
        self._phase = ""
        self._eof_due: float | None = None  # when the current phase ends at the latest
        self._partial_or_final_seen = False
        self._last_final_word: ev.Word | None = None
        self._final_words: list[str] = []  # the words of the finals reported (the latest kept)
        self.export_id: str | None = None
        self.pre_auth_hint_given = False

    def connect_request(self) -> ConnectRequest:
        parts = urlsplit(self.url)
        url = self.url if parts.path else urlunsplit(parts._replace(path="/"))
        return ConnectRequest(url=url, secrets=(self.api_key,) if self.api_key else ())

    def start(self, now: float) -> None:
        if self.api_key is not None:
            self._send(json.dumps({"Authorization": self.api_key}, separators=(",", ":")))

    def send_audio(self, data: bytes, now: float) -> None:
        if len(data) % 2:
            raise ValueError("Melvin frames must have an even byte length")
        if self._eof_sent or self._phase or not data:
            return  # audio after end_audio() would start a new transcription
        if self._first_audio_at is None:
            self._first_audio_at = now
        if self._held is not None:
            self._send(self._held)
        self._held = data
        self.audio_seconds_sent += len(data) / 2 / self.sample_rate

    @property
    def holding(self) -> bool:
        return self._seat == "waiting" and not self.finished

    def end_audio(self, now: float) -> None:
        if self._eof_sent or self._phase or self.finished:
            return
        if self.holding:
            self._end_deferred = True  # the end phase needs a seated handler
            return
        if self._first_audio_at is None:
            self._send_eof()  # no audio, no transcription
            return
        self._sync(now)

    def _sync(self, now: float) -> None:
        self._phase = "sync"
        self._probe(SYNC_FRAME)
        self._eof_due = now + SYNC_TIMEOUT_SECONDS

    def _probe(self, text: str) -> None:
        self._probes.append(text)
        self._send(text)

    def _idle(self, now: float) -> None:
        """The server has read everything and runs no transcription: the held frame, or eof."""
        if self._held is None:
            self._send_eof()
            return
        self._send(self._held)
        self._held = None
        self._sync(now)

    def _send_eof(self) -> None:
        self._eof_due = None
        self._phase = ""
        self._eof_sent = True
        self._send(EOF_FRAME)

    def next_deadline(self) -> float | None:
        if self.holding and self._waiting_since is not None:
            return self._waiting_since + self.seat_timeout  # the end phase waits for the seat
        return self._eof_due

    def tick(self, now: float) -> None:
        if self.finished:
            return
        if self.holding:
            if self._waiting_since is not None and now >= self._waiting_since + self.seat_timeout:
                self._emit_tail()
                self._fail(
                    f"no worker seat within {self.seat_timeout:g} s: the server is busy "
                    "(it kept answering 'No transcription workers available'); "
                    "wait longer with --seat-timeout SECONDS",
                    ev.TIMEOUT,
                )
            return
        if self._eof_due is None or now < self._eof_due:
            return
        if self._phase == "sync":  # never answered: do not wait twice
            if self._held is not None:
                self._send(self._held)
                self._held = None
            self._send_eof()
        else:
            self._idle(now)

    def receive_text(self, text: str, now: float) -> None:
        if self.finished:
            return
        stripped = text.strip()
        if stripped == UNKNOWN_CONTROL and self._probes:
            self._answered(self._probes.popleft(), now)
            return
        if stripped.startswith(WAITING_PREFIX):
            self._on_waiting(stripped, now)
            return
        result = self._handle_text(text)
        if result and self._phase == "sync" and not self.finished and not self.holding:
            # Results while the probe waits: the server is still working through what was
            # sent (a slow model with a backlog). Waiting on is better than eof now, which
            # would meet a running transcription. (Garbage proves nothing: no re-arm.)
            self._eof_due = now + SYNC_TIMEOUT_SECONDS
        if result == "partial" and self._phase == "idle":
            # This partial ended the last transcription that could run. The held frame waits
            # until the server's time trigger (1 s, or as long as a transcription takes) fires.
            if self._held is None:
                self._send_eof()
            else:
                self._phase = "retrigger"
                self._eof_due = now + RETRIGGER_SECONDS

    def _answered(self, probe: str, now: float) -> None:
        """A seated handler read everything up to this probe: any answer is the seat."""
        self._seated(now)
        if probe == SYNC_FRAME and self._phase == "sync":
            self._phase = "idle"
            self._eof_due = now + EOF_GRACE_SECONDS

    def _on_waiting(self, message: str, now: float) -> None:
        """No free worker seat (sent after auth, then every 10 s until seated)."""
        if self._seat == "" and not self._partial_or_final_seen and not self._eof_sent:
            self._seat = "waiting"
            self._waiting_since = now
            self._probe(SEAT_PROBE)
        waited = 0.0 if self._waiting_since is None else now - self._waiting_since
        self._emit(ev.Status, state="waiting", message=message, seconds=round(waited, 3))

    def _seated(self, now: float) -> None:
        if self._seat != "waiting":
            return
        self._seat = "seated"
        waited = now - (self._waiting_since if self._waiting_since is not None else now)
        self._emit(
            ev.Status,
            state="seated",
            message=f"a worker seat is free after {waited:.1f} s of waiting",
            seconds=round(waited, 3),
        )
        if self._phase == "sync":
            self._eof_due = now + SYNC_TIMEOUT_SECONDS  # the probe's wait starts now
        if self._end_deferred:
            self._end_deferred = False
            self.end_audio(now)

    def _handle_text(self, text: str) -> str:
        """Handle one server text frame; what it was: "partial", "final", else ""."""
        stripped = text.strip()
        if EXPORT_ID.match(stripped):
            self.export_id = stripped
            self._emit_tail()
            self._finish("eof", export_id=stripped)
            return ""
        if stripped in AUTH_FAILURES:
            self._fail(f"Melvin-ASR rejected the credentials: {stripped}", ev.AUTH)
            return ""
        if stripped == UNKNOWN_CONTROL:
            self._on_unknown_control()
            return ""
        msg = self._parse_json_object(text)
        if msg is None:
            return ""
        if "partial" in msg:
            self._partial_or_final_seen = True
            self._on_partial(msg["partial"])
            return "partial"
        if "result" in msg or "text" in msg:
            self._partial_or_final_seen = True
            self._on_final(msg)
            return "final"
        self._emit(ev.Warning, message=f"ignored an unknown message with keys {sorted(msg)}")
        return ""

    def _on_unknown_control(self) -> None:
        if self.api_key is not None and not self._partial_or_final_seen:
            # A server before v1.1.0-dev.2 has no auth: it takes our auth frame for an unknown
            # control message (real server v1.1.0-dev.0, src/websocket/stream.py, echo()) and
            # answers before anything else.
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
        self._tail = " ".join(_merge_partials(self._tail.split(), text.split()))
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
        repeated = self._repeated_run(words)
        if repeated:
            words = words[repeated:]
            text = " ".join(w.word for w in words)
            if not text:
                return
        if words:
            self._last_final_word = words[-1]
        self._final_words = (self._final_words + text.split())[-MAX_TAIL_OVERLAP_WORDS:]
        self._emit(
            ev.Final,
            text=text,
            start=words[0].start if words else None,
            end=words[-1].end if words else None,
            words=words,
        )

    def _repeated_run(self, words: tuple[ev.Word, ...]) -> int:
        """How many of a final's first words the previous finals already hold (they are
        dropped). Two server bugs (melvin.md): the word cut at the window edge comes again with
        the same start; and when the window is cut while a transcription runs, that pass's
        word times are shifted by the cut, its cutoff misses, and a whole run of confirmed
        words is confirmed again, later in time. A run of two or more words that continues
        exactly where the finals end is such a repeat; one word only with the same start."""
        run = _overlap(self._final_words, [w.word for w in words], shortest=2)
        if run:
            return run
        last = self._last_final_word
        if (
            words
            and last is not None
            and last.word == words[0].word
            and abs(last.start - words[0].start) <= REPEATED_WORD_START_TOLERANCE
        ):
            return 1
        return 0

    def _emit_tail(self) -> None:
        # A partial can repeat words the finals already hold: the word cut at the window edge
        # (the server's "doubled word" workaround compares " word" with "word" and never
        # fires), or a whole run when a window cut lands while a transcription is in flight
        # (its word times then miss the cutoff). Drop the longest run of the tail's first words
        # that ends the finals.
        tail = self._tail.split()
        self._tail = " ".join(tail[_confirmed_prefix(self._final_words, tail) :])
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
    """What of the unconfirmed tail a final did not confirm: a partial lists every word after
    the previous final, so the words after the final's run are still unconfirmed."""
    words, run = partial.split(), final_text.split()
    for start in range(len(words) - len(run), -1, -1):
        if run and words[start : start + len(run)] == run:
            return " ".join(words[start + len(run) :])
    return ""


def _merge_partials(tail: list[str], new: list[str]) -> list[str]:
    """The unconfirmed words after a new partial. A partial that starts where the tail starts
    revises it; one that starts inside it (the server moved its cutoff, e.g. after a window cut
    during a transcription, and dropped words no final holds) continues it where they overlap."""
    if not tail or new[:2] == tail[:2]:
        return new
    k = _overlap(tail, new, shortest=2)
    return tail + new[k:] if k else new


def _overlap(before: list[str], after: list[str], shortest: int = 1) -> int:
    """The length of the longest run (``shortest`` words at least; else 0) that ends ``before``
    and starts ``after``."""
    for k in range(min(len(before), len(after)), shortest - 1, -1):
        if before[-k:] == after[:k]:
            return k
    return 0


def _confirmed_prefix(finals: list[str], tail: list[str], dropped: int = 2) -> int:
    """How many first words of the tail the finals already hold: the longest exact run that
    ends the finals, else -- when the server left up to ``dropped`` words out of a final that
    its partial still had (seen against the real server at window cuts) -- everything up to
    the last occurrence of the finals' last word, if the words before it are the finals'."""
    exact = _overlap(finals, tail)
    if exact or not finals or finals[-1] not in tail:
        return exact
    end = len(tail) - tail[::-1].index(finals[-1])
    if end < 4:  # too short to tell a repeat from new words that end like the finals
        return 0
    recent = set(finals[-(end + dropped) :])
    missing = sum(w not in recent for w in tail[:end])
    return end if missing <= min(dropped, max(1, end // 5)) else 0


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
