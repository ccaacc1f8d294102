"""One session: one backend's stream over its connection (or, with reconnects, a chain of them).

Theory of operation. A ``Session`` couples a sans-I/O backend with a WebSocket. Per connection
it runs three tasks: a receiver (frames in -> backend -> events out), a writer (the only task
that sends, so frames leave in the order the backend queued them) and a timer (the backend's
``next_deadline``). Audio comes in through ``offer`` (from ``engine.feed``); ``end_audio`` sends
the end-of-stream and ``wait_done`` waits (bounded by ``timeout``) for the server's end.
Failures never raise out of here: they become ``Error`` events. Events go to the handler given
at construction, then to every ``subscribe``d observer (metrics, the runner's error count).

Backpressure and a server that stops reading: at most ``MAX_QUEUED_FRAMES`` frames wait for
the socket (then the feeder waits too, so memory stays flat). When one send has not gone
through for ``LAG_WARNING`` seconds a warning says how much audio is waiting; after
``timeout`` seconds the stream fails with a timeout (exit 6).

Reconnect (``SessionOptions.reconnect`` > 0 and a backend factory). Only transient failures
are retried: a connection lost or refused, a 5xx answer or close 1011 before the end of the
audio -- never rejected credentials, bad input, TLS or an unknown host, a stalled server (a
timeout), nor anything after the end-of-stream was sent (the server already had all the audio,
and only the unsent audio is kept). Each retry waits ``uniform(0, min(cap, base * 2**n))``
seconds (full jitter; n counts the waits of this outage), announced by a ``Status`` event with
``state="reconnecting"``, and opens a new session with a fresh backend from the factory; up to
``reconnect`` attempts in all, for the whole run. The audio goes on from the drop: a chunk
handed to a backend stays in ``_unwritten`` until the writer put its frame on the socket, and
after a drop the unwritten chunks are sent again first, preceded by the last
``REPLAY_OVERLAP`` seconds that were written (they may have been lost in flight: a little
audio twice is better than a gap). A file waits meanwhile (its pacer is shifted by the
outage); live audio captured during the outage queues in a bounded backlog
(``backlog_seconds``; the oldest audio is dropped, with a warning, when it is full) that is sent
as fast as the server takes it. Each session's times start at 0, so the stream shifts the times
of its events by ``_offset``, the audio position where that session began (dropped backlog
audio included): every event stays on the original timeline.

A hold (``Backend.holding``: the server asked the client to wait, e.g. Melvin's worker seat).
While it lasts, audio goes to the same backlog instead of the wire and the end-of-stream waits;
the feeder is not blocked, so the other channels of a ``--split-channels`` run go on (their
seats may be the ones this stream waits for). When the hold ends, the backlog is sent: live
audio as fast as the server takes it, a file at its pace from that moment, as if the stream
had just begun; new audio queues behind it until it is sent. A file keeps at most
``hold_seconds`` of audio (then the feeder waits); live audio ``backlog_seconds``, as above.
``wait_done``'s timeout counts from the end-of-stream, not from the end of the feeder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from streamcli import events as ev
from streamcli.audio.pacer import Pacer
from streamcli.backends.base import Backend, Frame
from streamcli.exit import StreamcliError, kind_for_status
from streamcli.redact import mask_all, public_url, redact_url
from streamcli.transport.websocket import (
    MESSAGE_TOO_BIG,
    PermanentConnectError,
    WebSocketConnection,
    WireOptions,
)

EventHandler = Callable[[ev.Event], None]
BackendFactory = Callable[[], Backend]
MAX_QUEUED_FRAMES = 64  # bound on frames waiting for the socket (a server that stops reading)
SEND_ERROR_GRACE = 0.5  # seconds the receiver gets to explain a failed send
LAG_WARNING = 2.0  # seconds one send may hang before the lag is reported
LAG_REPEAT = 30.0  # at most one lag warning in this many seconds
REPLAY_OVERLAP = 0.2  # seconds of written audio sent again after a drop (lost in flight?)


@dataclass
class SessionOptions:
    speed: float = 1.0
    chunk_ms: int = 100
    timeout: float = 30.0  # max wait for the end after the audio, or for a send to go through
    wire: WireOptions = field(default_factory=WireOptions)
    raw: bool = False
    debug: bool = False
    duration: float | None = None  # stop after this much audio (seconds)
    reconnect: int = 0  # reconnect attempts in all (transient failures only)
    reconnect_base: float = 0.5  # backoff: uniform(0, min(cap, base * 2**attempt)) seconds
    reconnect_cap: float = 10.0
    backlog_seconds: float = 60.0  # live audio kept while reconnecting or held
    hold_seconds: float = 3600.0  # file audio kept while held (then the feeder waits)

    def backoff_delay(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (0 first): exponential backoff with full jitter."""
        return random.uniform(0, min(self.reconnect_cap, self.reconnect_base * 2**attempt))


class Tracer:
    """``--debug`` wire trace on stderr; secrets are masked (``abcd…``)."""

    def __init__(self, secrets: tuple[str, ...], out: TextIO | None = None) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.out = out or sys.stderr

    def mask(self, text: str) -> str:
        return mask_all(text, self.secrets)

    def __call__(
        self, label: str, direction: str, frame: str | bytes | None, note: str = ""
    ) -> None:
        if isinstance(frame, bytes):
            body = f"binary {len(frame)} bytes"
        elif frame is None:
            body = self.mask(note)
        else:
            body = "text " + self.mask(frame.replace("\n", "\\n"))
        print(f"[wire {label}] {direction} {body}", file=self.out, flush=True)


class Session:
    """One backend on one WebSocket connection -- or, with reconnects, on a chain of them."""

    def __init__(
        self,
        backend: Backend,
        emit: EventHandler,
        options: SessionOptions,
        channel: int | None = None,
        connect: Callable[..., Awaitable[WebSocketConnection]] = WebSocketConnection.open,
        factory: BackendFactory | None = None,
    ) -> None:
        self.backend = backend
        self.channel = channel
        self._emit_event = emit
        self._observers: list[EventHandler] = []
        self.options = options
        self._connect = connect
        self._factory = factory
        self.ws: WebSocketConnection | None = None
        self._queue: asyncio.Queue[tuple[Frame, float] | None] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._done = asyncio.Event()  # the stream is over for good
        self._over = asyncio.Event()  # the current connection's session is over
        self._stop = asyncio.Event()  # stop reconnecting (a timeout, an abort)
        self.label = backend.speaker or backend.name
        self.request = backend.connect_request()
        self._secrets = self.request.all_secrets()
        self.trace = Tracer(self._secrets) if options.debug else None
        self.failed = False
        self.live_input = False  # set by ``feed``: live audio is buffered during an outage
        self.sessions = 0  # connections opened so far
        self.retries_left = options.reconnect if factory is not None else 0
        self._connected = False
        self._reconnecting = False  # from a held failure until a new connection (or giving up)
        self._held: ev.Error | None = None  # a transient failure a reconnect may repair
        self._offset = 0.0  # timeline position of the current session's first audio
        self._given = 0.0  # timeline end of the audio handed to backends
        self._written = 0.0  # timeline end of the audio whose frames reached the socket
        # (start, end, chunk): handed to the backend, not yet on the wire / the last ones written
        self._unwritten: deque[tuple[float, float, bytes]] = deque()
        self._recent: deque[tuple[float, float, bytes]] = deque()
        self._backlog: deque[bytes] = deque()  # audio waiting for the next connection
        self._backlog_seconds = 0.0
        self._skipped = 0.0  # backlog audio dropped (full) not yet counted in ``_given``
        self._backlog_warned = False
        self._hold_backlog = False  # the backlog is a hold's: sent at the pace once it ends
        self._end_requested = False
        self._end_sent = False
        self._drainer: asyncio.Task[None] | None = None
        self._lag_reported = -LAG_REPEAT

    # ---- events ---------------------------------------------------------------------------
    def emit(self, event: ev.Event, *, retryable: bool = True) -> None:
        if isinstance(event, ev.Error):
            if retryable and self._may_retry(event):
                self._held = self._held or event
                self._reconnecting = True
                return
            self.failed = True
        event = self._masked(self._shifted(event))
        self._emit_event(event)
        for observe in self._observers:
            observe(event)

    def subscribe(self, handler: EventHandler) -> None:
        """Tell ``handler`` every event this session emits, after the main handler."""
        self._observers.append(handler)

    def _may_retry(self, error: ev.Error) -> bool:
        return (
            error.kind == ev.CONNECTION
            and self.retries_left > 0
            and not self._end_sent
            and not self._stop.is_set()
        )

    def _shifted(self, event: ev.Event) -> ev.Event:
        """Move a later session's times onto the original stream's timeline."""
        offset = self._offset
        if not offset:
            return event
        if isinstance(event, ev.Final):
            return dataclasses.replace(
                event,
                start=_plus(event.start, offset),
                end=_plus(event.end, offset),
                words=tuple(
                    dataclasses.replace(
                        w, start=round(w.start + offset, 6), end=round(w.end + offset, 6)
                    )
                    for w in event.words
                ),
            )
        if isinstance(event, ev.Emotion) and event.position is not None:
            return dataclasses.replace(event, position=_plus(event.position, offset))
        if isinstance(event, ev.End):
            # What the end reports (a Melvin export) covers this connection only: say from where.
            return dataclasses.replace(event, extra={**event.extra, "resumed_at": round(offset, 3)})
        return event

    def _masked(self, event: ev.Event) -> ev.Event:
        return masked(event, self._secrets)

    def _error(self, message: str, kind: str) -> ev.Error:
        return ev.Error(
            backend=self.backend.name, speaker=self.backend.speaker, message=message, kind=kind
        )

    def fail(self, message: str, kind: str) -> None:
        """Stop this stream for good with an error (a timeout, an abort, a protocol error)."""
        if self._done.is_set():
            return
        self._stop.set()
        self._end(self._error(message, kind), retryable=False)

    def _lost(self, message: str) -> None:
        """The connection broke: a reconnect may repair that."""
        self._end(self._error(message, ev.CONNECTION), retryable=True)

    def _end(self, error: ev.Error, retryable: bool) -> None:
        if self._connected and not self.backend.finished:
            self.backend.give_up(self._now())
            self.pump()
            if not self.backend.finished:
                self.backend.finished = True
                self.emit(error, retryable=retryable)
        elif self._reconnecting and not retryable:
            # Between two sessions: give up reconnecting and say why the last one ended.
            held, self._held = self._held, None
            self._reconnecting = False
            self.emit(held or error, retryable=False)
            self._done.set()
        self._over.set()
        self._changed.set()

    def pump(self) -> None:
        """Move what the backend queued: frames to the writer, events to the sinks."""
        for frame in self.backend.frames_to_send():
            self._queue.put_nowait((frame, self._given))
        for event in self.backend.events_received():
            self.emit(event)
        if self.backend.finished:
            self._over.set()
        elif self.backend.holding:
            self._hold_backlog = True
        elif self._hold_backlog and self._connected:
            self._start_drain()  # the hold is over: what it kept goes first
        self._changed.set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @property
    def over(self) -> bool:
        """The stream is over for good (its last session ended; no reconnect is coming)."""
        return self._done.is_set()

    # ---- lifecycle --------------------------------------------------------------------------
    async def connect(self) -> bool:
        """Open the first connection (retrying transient failures); False when it failed."""
        if await self._open(reconnecting=False):
            return True
        self._finish()
        return False

    async def run(self) -> None:
        """Serve connections until the session ends, for good or after the last retry."""
        try:
            while self.ws is not None:
                await self._serve()
                if self._held is None:
                    break
                self._rewind()
                if not await self._open(reconnecting=True):
                    break
                self._start_drain()
        finally:
            if self._drainer is not None:
                self._drainer.cancel()
            self._finish()

    def _finish(self) -> None:
        self._reconnecting = False
        if self._held is not None:
            held, self._held = self._held, None
            self.emit(held, retryable=False)
        self._done.set()
        self._changed.set()

    async def _open(self, reconnecting: bool) -> bool:
        """Connect; on a transient failure wait (full jitter) and try a fresh backend."""
        waits = 0  # backoffs in this outage: the n-th waits up to base * 2**n
        if reconnecting:
            if not await self._backoff(waits):
                return False
            waits += 1
        while True:
            error, transient = await self._connect_once()
            if error is None:
                return True
            if self._done.is_set():
                return False  # given up meanwhile (a timeout, an abort): already reported
            self.emit(error, retryable=transient)
            if self._held is None or not await self._backoff(waits):
                return False
            waits += 1

    async def _backoff(self, attempt: int) -> bool:
        held = self._held
        if held is None or self._stop.is_set() or self.retries_left <= 0 or self._factory is None:
            return False
        self.retries_left -= 1
        number = self.options.reconnect - self.retries_left
        delay = self.options.backoff_delay(attempt)
        self.emit(
            ev.Status(
                backend=self.backend.name,
                speaker=self.backend.speaker,
                state="reconnecting",
                message=f"{held.message}; reconnecting in {delay:.1f} s "
                f"(attempt {number} of {self.options.reconnect})",
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        if self._stop.is_set():
            return False
        self._held = None
        self.backend = self._factory()
        return True

    async def _connect_once(self) -> tuple[ev.Error | None, bool]:
        """One connect attempt: (None, _) when connected, else (the error, transient?)."""
        self.request = self.backend.connect_request()
        self._secrets = tuple(dict.fromkeys((*self._secrets, *self.request.all_secrets())))
        if self.trace:
            self.trace.secrets = self._secrets
            self.trace(self.label, "→", None, self._describe_connect())
        handshake = getattr(self.backend, "handshake_error", None)
        args = (self.request, self.options.wire) + ((handshake,) if handshake is not None else ())
        attempt = asyncio.ensure_future(self._connect(*args))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await attempt
        if not attempt.cancelled() and attempt.exception() is None and self._stop.is_set():
            await attempt.result().close()  # connected just as the stream gave up
        if attempt.cancelled() or (attempt.exception() is None and self._stop.is_set()):
            self.backend.finished = True
            return self._error("stopped while connecting", ev.CONNECTION), False
        exc = attempt.exception()
        if isinstance(exc, StreamcliError):
            self.backend.finished = True
            kind = kind_for_status(exc.status)
            return self._error(exc.message, kind), not isinstance(exc, PermanentConnectError)
        if exc is not None:
            raise exc
        self.ws = attempt.result()
        self._connected = True
        self._reconnecting = False
        self.sessions += 1
        self._queue = asyncio.Queue()
        self._over = asyncio.Event()
        self._given += self._skipped  # backlog audio dropped during the outage
        self._skipped = 0.0
        self._offset = self._given
        self._recent.clear()
        info = {"url": public_url(self.request.url), **getattr(self.backend, "session_info", {})}
        self.backend.resumed_at = self._offset  # where this connection's audio begins
        if self.sessions > 1:
            info |= {"reconnect": self.sessions - 1, "resumed_at": round(self._offset, 3)}
        self.emit(
            ev.SessionStarted(backend=self.backend.name, speaker=self.backend.speaker, info=info)
        )
        self.backend.start(self._now())
        self.pump()
        return None, True

    def _describe_connect(self) -> str:
        text = f"connect {redact_url(self.request.url)}"
        if self.request.headers:
            headers = ", ".join(f"{k}: {v}" for k, v in self.request.headers.items())
            text += f" headers {{{headers}}}"
        return text

    async def _serve(self) -> None:
        """Receive, write and tick until this connection's session is over."""
        ws = self.ws
        assert ws is not None
        writer = asyncio.create_task(self._writer(ws, self._queue))
        timer = asyncio.create_task(self._timer())
        try:
            await self._receiver(ws)
        finally:
            self._connected = False
            if self._held is None:
                self._queue.put_nowait(None)  # flush what is queued (the end-of-stream)
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(writer, timeout=2.0)
            timer.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await ws.close()
            self._changed.set()

    async def _receiver(self, ws: WebSocketConnection) -> None:
        over = self._over
        while not self.backend.finished:
            recv = asyncio.ensure_future(ws.receive())
            over_wait = asyncio.ensure_future(over.wait())
            try:
                await asyncio.wait({recv, over_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                over_wait.cancel()
                if not recv.done():
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await recv
            if recv.cancelled():
                break
            try:
                msg = recv.result()
            except Exception as e:
                self._lost(f"connection lost: {_reason(e)}")
                break
            self._handle(msg)

    def _handle(self, msg) -> None:
        now = self._now()
        if self.trace:
            self.trace(
                self.label,
                "←",
                msg.data if msg.kind in ("text", "binary") else None,
                f"{msg.kind} {msg.code or ''} {msg.reason}".strip(),
            )
        if self.options.raw and msg.kind in ("text", "binary"):
            self.emit(_raw_event(self.backend, msg.data))
        if msg.kind == "text":
            self.backend.receive_text(msg.data, now)
        elif msg.kind == "binary":
            self.backend.receive_binary(msg.data, now)
        elif msg.kind == "close":
            self.backend.receive_close(msg.code, msg.reason, now)
            self.pump()
            if not self.backend.finished:
                self._lost("the server closed the connection")
            return
        elif msg.code == MESSAGE_TOO_BIG:
            # A protocol error, not a lost connection: trying again would get the same message.
            self.fail(msg.reason, ev.PROTOCOL)
            return
        else:
            self._lost(f"connection lost: {msg.reason}")
            return
        self.pump()

    async def _writer(self, ws: WebSocketConnection, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            frame, audio_end = item
            if self.trace:
                self.trace(self.label, "→", frame)
            if not await self._send(ws, frame):
                return
            if audio_end > self._written:
                self._written = audio_end
                self._mark_written(audio_end)
            self._changed.set()

    def _mark_written(self, audio_end: float) -> None:
        while self._unwritten and self._unwritten[0][1] <= audio_end + 1e-9:
            self._recent.append(self._unwritten.popleft())
        while len(self._recent) > 1 and self._recent[1][0] <= audio_end - REPLAY_OVERLAP + 1e-9:
            self._recent.popleft()

    async def _send(self, ws: WebSocketConnection, frame: Frame) -> bool:
        """Send one frame; report a send that hangs, give up after ``timeout``."""
        limit = self.options.timeout
        first = min(LAG_WARNING, limit / 2)
        lag = asyncio.get_running_loop().call_later(first, self._report_lag, first)
        deadline = asyncio.timeout(limit)  # a timer, not a task: this runs for every frame
        try:
            async with deadline:
                await ws.send(frame)
        except TimeoutError:
            if not deadline.expired():
                self._lost("connection lost while sending: timed out")
                return False
            self.fail(
                f"the server stopped reading: nothing could be sent for {limit:g} s", ev.TIMEOUT
            )
            return False
        except Exception as e:
            # The receiver usually knows why the socket went away (a close frame, a message over
            # the size limit): give it a moment to say so; a failed send only echoes that cause.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._over.wait(), SEND_ERROR_GRACE)
            self._lost(f"connection lost while sending: {_reason(e)}")
            return False
        finally:
            lag.cancel()
        return True

    def _report_lag(self, seconds: float) -> None:
        if self._now() - self._lag_reported < LAG_REPEAT:
            return
        self._lag_reported = self._now()
        waiting = max(0.0, self._given - self._written)
        self.emit(
            ev.Warning(
                backend=self.backend.name,
                speaker=self.backend.speaker,
                message=f"the server is not reading: nothing could be sent for {seconds:g} s "
                f"({waiting:.1f} s of audio waiting)",
            )
        )

    async def _timer(self) -> None:
        while not self.backend.finished:
            deadline = self.backend.next_deadline()
            self._changed.clear()
            if deadline is None:
                await self._changed.wait()
                continue
            delay = deadline - self._now()
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=delay)
                continue
            self.backend.tick(self._now())
            self.pump()

    # ---- audio in ---------------------------------------------------------------------------
    def _accepting(self) -> bool:
        return self._connected and not self.backend.finished

    def _seconds(self, chunk: bytes) -> float:
        width = 1 if self.backend.encoding == "mulaw" else 2
        return len(chunk) / width / self.backend.sample_rate

    async def offer(self, chunk: bytes) -> None:
        """Send one chunk when the protocol allows; wait while the socket is backed up.

        While reconnecting, a file waits here; live audio goes to the backlog. While the
        server holds the stream (and until what the hold kept is sent), both go to the
        backlog; a file waits only once it holds ``hold_seconds``."""
        while not self._done.is_set():
            if self.live_input and (self._backlog or not self._accepting() or self._held_back()):
                self._buffer(chunk)
                return
            if not self.live_input and self._accepting() and self._held_back():
                if self._backlog_seconds < self.options.hold_seconds:
                    self._keep(chunk)
                    return
            elif (
                self._accepting()
                and not self._backlog
                and self.backend.ready_for_audio
                and self._queue.qsize() < MAX_QUEUED_FRAMES
            ):
                self._give(chunk)
                return
            self._changed.clear()
            await self._changed.wait()

    def _give(self, chunk: bytes) -> None:
        """Hand one chunk to the current backend; it stays in ``_unwritten`` until written."""
        if self._skipped:
            self._given += self._skipped
            if self.backend.audio_seconds_sent == 0:
                self._offset = self._given  # the session starts after the dropped audio
            self._skipped = 0.0
        start = self._given
        self._given += self._seconds(chunk)
        self._unwritten.append((start, self._given, chunk))
        self.backend.send_audio(chunk, self._now())
        self.pump()

    def _held_back(self) -> bool:
        """Audio waits: the server holds the stream, or a hold's backlog is still being sent."""
        return self.backend.holding or self._hold_backlog

    def _keep(self, chunk: bytes) -> None:
        self._backlog.append(chunk)
        self._backlog_seconds += self._seconds(chunk)

    def _buffer(self, chunk: bytes) -> None:
        self._keep(chunk)
        dropped = 0.0
        while self._backlog_seconds > self.options.backlog_seconds and len(self._backlog) > 1:
            seconds = self._seconds(self._backlog.popleft())
            self._backlog_seconds -= seconds
            dropped += seconds
        if dropped:
            self._skipped += dropped
            if not self._backlog_warned:
                self._backlog_warned = True
                self.emit(
                    ev.Warning(
                        backend=self.backend.name,
                        speaker=self.backend.speaker,
                        message=f"the {'hold' if self._hold_backlog else 'reconnect'} buffer is "
                        f"full ({self.options.backlog_seconds:g} s of audio): the oldest audio "
                        "is dropped",
                    )
                )

    def _rewind(self) -> None:
        """The connection dropped: what it never put on the wire goes first in the backlog."""
        replay = [*self._recent, *self._unwritten]
        self._recent.clear()
        self._unwritten.clear()
        self._given = replay[0][0] if replay else self._written
        self._written = self._given
        self._backlog.extendleft(reversed([chunk for _, _, chunk in replay]))
        self._backlog_seconds += sum(end - start for start, end, _ in replay)
        self._backlog_warned = False

    def _start_drain(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        """Send the backlog as fast as the connection takes it (a file held back: at its pace
        from now on), then a pending end-of-stream."""
        paced = self._hold_backlog and not self.live_input and self.options.speed > 0
        pacer = Pacer(self.options.speed)
        pacer.start()
        sent = 0.0
        while self._backlog and not self._done.is_set():
            if not self._accepting() or self.backend.holding:
                return  # lost again, or held again: the backlog waits
            if self.backend.ready_for_audio and self._queue.qsize() < MAX_QUEUED_FRAMES:
                if paced:
                    await pacer.wait_until(sent)
                    if not self._backlog or not self._accepting() or self.backend.holding:
                        continue
                chunk = self._backlog.popleft()
                self._backlog_seconds -= self._seconds(chunk)
                sent += self._seconds(chunk)
                self._give(chunk)
                continue
            self._changed.clear()
            await self._changed.wait()
        if not self._backlog:
            self._backlog_seconds = 0.0  # no float drift across outages
            if not self.backend.holding:
                self._hold_backlog = False
        if self._end_requested and self._accepting() and not self._backlog:
            self._send_end()
        self._changed.set()

    def end_audio(self) -> None:
        self._end_requested = True
        if self._accepting() and not self._backlog and not self._held_back():
            self._send_end()
        # otherwise the backlog drain sends it after the reconnect or the hold

    def _send_end(self) -> None:
        if self._end_sent or self.backend.finished:
            return
        self._end_sent = True
        self.backend.end_audio(self._now())
        self.pump()

    async def wait_done(self, timeout: float) -> None:
        # A held stream sends what it kept at its pace after the feeder ended: the timeout
        # counts from the end-of-stream (the backend bounds the hold itself).
        while self._held_back() and not self._done.is_set() and not self.backend.finished:
            self._changed.clear()
            await self._changed.wait()
        try:
            await asyncio.wait_for(self._done.wait(), timeout=timeout)
        except TimeoutError:
            self.fail(
                f"no end of session from the server within {timeout:g} s after the audio ended",
                ev.TIMEOUT,
            )


def masked(event: ev.Event, secrets: tuple[str, ...]) -> ev.Event:
    """Credentials never leave in a message, whatever a server or a library put in it."""
    if secrets and isinstance(event, ev.Error | ev.Warning | ev.Status | ev.Raw) and event.message:
        return dataclasses.replace(event, message=mask_all(event.message, secrets))
    return event


def _plus(value: float | None, offset: float) -> float | None:
    return None if value is None else round(value + offset, 6)


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _raw_event(backend: Backend, data: str | bytes) -> ev.Raw:
    if isinstance(data, bytes):
        return ev.Raw(backend=backend.name, speaker=backend.speaker, binary_length=len(data))
    return ev.Raw(backend=backend.name, speaker=backend.speaker, message=data)
