"""The sans-I/O backend contract.

Theory of operation (the model: python-websockets' ``protocol.py``): a backend is a pure state
machine. The session feeds it audio, control and received frames, each with the current time;
the backend queues frames to send and events to report, which the session drains with
``frames_to_send()`` and ``events_received()``. A backend never imports asyncio, aiohttp or
time, and it never raises on server input: garbage becomes an ``Error`` event.

A backend that wants to be woken up without input (a keepalive, a delayed ``eof``) returns the
time from ``next_deadline()``; the session calls ``tick(now)`` when that time has come.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streamcli import events as ev
from streamcli.redact import url_secrets

Frame = str | bytes  # a WebSocket message: str = text frame, bytes = binary frame
INTERNAL_ERROR_CLOSE = 1011  # WebSocket close code: the server's handler failed


@dataclass(frozen=True)
class ConnectRequest:
    """Where and how to open the WebSocket. ``secrets`` lists header values to mask in traces."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def all_secrets(self) -> tuple[str, ...]:
        """What to mask in anything shown: the header secrets and the URL's own (a password,
        a ``?token=``)."""
        return tuple(dict.fromkeys(s for s in (*self.secrets, *url_secrets(self.url)) if s))


class Backend:
    """Base class with the drain queues and helpers; subclasses implement the protocol."""

    name: ClassVar[str] = "base"
    sample_rate: int = 16000
    encoding: ClassVar[str] = "s16le"  # or "mulaw"

    def __init__(self, *, speaker: str | None = None) -> None:
        self.speaker = speaker
        self._frames: list[Frame] = []
        self._events: list[ev.Event] = []
        self.finished = False  # True once End or a fatal Error was emitted
        self.resumed_at = 0.0  # set by the session: the input time this connection began at
        self._last_partial: str | None = None
        # The last partial text since the last final: servers may never confirm it (melvin.md:
        # "the last words of a stream may exist only in partials"), so it is reported at the end.
        self._tail = ""
        self.audio_seconds_sent = 0.0

    # ---- what the session calls -------------------------------------------------------------
    def connect_request(self) -> ConnectRequest:
        raise NotImplementedError

    def start(self, now: float) -> None:
        """The connection is open: queue what goes first (auth, config, header)."""

    def send_audio(self, data: bytes, now: float) -> None:
        """Queue one chunk of audio already in the backend's format (rate, encoding)."""
        raise NotImplementedError

    def end_audio(self, now: float) -> None:
        """No more audio: queue the end-of-stream."""
        raise NotImplementedError

    def receive_text(self, text: str, now: float) -> None:
        raise NotImplementedError

    def receive_binary(self, data: bytes, now: float) -> None:
        self._fail(f"unexpected binary message of {len(data)} bytes from the server", ev.PROTOCOL)

    def receive_close(self, code: int | None, reason: str, now: float) -> None:
        """The server closed the connection. Default: an error unless already finished."""
        if not self.finished:
            detail = f" (code {code}{', ' + reason if reason else ''})" if code else ""
            self._fail(f"the server closed the connection before the end{detail}", ev.CONNECTION)

    def next_deadline(self) -> float | None:
        return None

    def tick(self, now: float) -> None:
        """Called by the session at (or after) ``next_deadline()``."""

    def give_up(self, now: float) -> None:
        """The session stops waiting (timeout, Ctrl-C, lost connection): report what is pending."""
        self._emit_tail()

    @property
    def ready_for_audio(self) -> bool:
        """False while the protocol forbids audio (e.g. before a handshake reply)."""
        return True

    @property
    def holding(self) -> bool:
        """True while the server asked the client to hold its audio mid-session (Melvin:
        waiting for a worker seat). The session keeps the audio meanwhile and sends it, at its
        pace, once this turns False; the end-of-stream waits too."""
        return False

    def frames_to_send(self) -> list[Frame]:
        out, self._frames = self._frames, []
        return out

    def events_received(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    # ---- helpers for subclasses -------------------------------------------------------------
    def _send(self, frame: Frame) -> None:
        self._frames.append(frame)

    def _emit(self, event_cls: type[ev.Event], **fields: Any) -> None:
        # Servers repeat an unchanged partial on every chunk (Vosk, Bodhi, Melvin): report a
        # partial only when its text changed since the last partial or final.
        if event_cls is ev.Partial:
            if fields.get("text") == self._last_partial:
                return
            self._last_partial = fields.get("text")
        elif event_cls is ev.Final:
            self._last_partial = None
        self._events.append(event_cls(backend=self.name, speaker=self.speaker, **fields))

    def _fail(self, message: str, kind: str = ev.SERVER, code: int | str | None = None) -> None:
        if self.finished:
            return
        self._emit(ev.Error, message=message, kind=kind, code=code)
        self.finished = True

    def _finish(self, reason: str, **extra: Any) -> None:
        if self.finished:
            return
        self._emit(ev.End, reason=reason, extra=extra)
        self.finished = True

    def _emit_tail(self) -> None:
        """Report the unconfirmed tail (if any) as a final marked ``unconfirmed``."""
        tail, self._tail = " ".join(self._tail.split()), ""
        if tail:
            self._emit(ev.Final, text=tail, unconfirmed=True)

    def _closed_after_end(
        self, code: int | None, reason: str, end_sent: bool, finish_reason: str
    ) -> None:
        """A close: before the end-of-stream it is a lost connection; after it, the normal end,
        unless the server's handler crashed (1011)."""
        if self.finished:
            return
        self._emit_tail()
        detail = f"code {code}{', ' + reason if reason else ''}" if code else "no close code"
        if not end_sent:
            self._fail(
                f"the server closed the connection before the end of the audio ({detail})",
                ev.CONNECTION,
            )
        elif code == INTERNAL_ERROR_CLOSE:
            self._fail(f"the server failed while finishing the session ({detail})", ev.SERVER)
        else:
            self._finish(finish_reason)

    def _parse_json_object(self, text: str) -> dict[str, Any] | None:
        """Parse a server JSON object; on garbage, emit a warning and return None."""
        try:
            value = json.loads(text)
        except ValueError:
            self._emit(ev.Warning, message=f"ignored a non-JSON message: {_clip(text)}")
            return None
        if not isinstance(value, dict):
            self._emit(
                ev.Warning, message=f"ignored a JSON message of the wrong shape: {_clip(text)}"
            )
            return None
        return value


def _clip(text: str, limit: int = 80) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def as_float(value: Any) -> float | None:
    """A number from server JSON, or None when it is not one (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
