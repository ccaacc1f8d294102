"""Locust users that run real streamcli sessions (``pip install 'streamcli[locust]'``).

A locustfile names a backend and the arguments of the command a user already runs::

    from streamcli.locust import StreamcliUser

    class Melvin(StreamcliUser):
        backend = "melvin"
        args = ["talk.wav", "--url", "ws://asr.example.org:8394"]

``streamcli locustfile melvin talk.wav --url ...`` writes exactly that. The arguments are parsed
by the command itself (``commands.plan``: the same options, config file, profile, environment
variables and checks), so credentials come from the environment of each worker.

Theory of operation (docs/locust.md has the measurements behind the choice). Locust runs its
users as greenlets on a gevent-patched standard library. Each user runs one session after
another in its own greenlet: the command's sans-I/O backend (the same one the CLI drives)
over ``transport.blocking`` (websocket-client, cooperative under gevent), a second greenlet
receiving, the audio paced on the session's own absolute clock exactly as ``engine.feed.play``
paces a load-test session (``gevent.sleep`` instead of the event loop). The input is decoded,
resampled and encoded once per worker process (``engine.feed.Decoder``) and shared. Events go
through ``metrics.SessionRecord``, as in ``--concurrency``.

Figures, fired as Locust requests (request type: the backend's name; response times in ms):
``connect``; ``first partial`` and ``first final`` (from the start of the audio); ``final
latency`` (one per final: arrival minus the wall time of its last word); ``seat wait``
(Melvin); ``pacing lateness`` (the session's worst frame: the client's own lateness, so a slow
worker is never mistaken for a slow server); ``session`` (its duration). A failed session is a
failure of ``session`` whose error starts with its kind: ``auth:``, ``connection:``,
``server:``, ``protocol:``, ``timeout:``, ``usage:``. At the end each worker prints its frames'
pacing lateness (p50/p95/max) on stderr.
"""

from __future__ import annotations

import locust  # first: Locust's gevent monkey-patching comes before ssl and sockets load

# isort: split
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from locust import User, constant, task
from locust.exception import StopUser

from streamcli import events as ev
from streamcli.backends.base import Backend
from streamcli.commands.plan import STREAMING_BACKENDS, SessionPlan, plan_session
from streamcli.engine.feed import Decoder, SharedAudio
from streamcli.engine.session import masked
from streamcli.exit import StreamcliError, UsageError, kind_for_status
from streamcli.metrics import LatenessHistogram, SessionRecord, failure
from streamcli.redact import public_url

__all__ = ["STREAMING_BACKENDS", "StreamcliUser", "session_plan"]

clock = time.monotonic

# ---- per worker process -------------------------------------------------------------------------
_PLANS: dict[tuple[str, tuple[str, ...]], SessionPlan] = {}
_AUDIO: dict[tuple[Any, ...], SharedAudio | StreamcliError] = {}
LATENESS = LatenessHistogram()  # every frame of this worker's sessions


def session_plan(backend: str, args: Sequence[str]) -> SessionPlan:
    """``streamcli BACKEND ARGS`` as a plan (once per process)."""
    key = (backend, tuple(args))
    if key not in _PLANS:
        from streamcli.cli import app

        _PLANS[key] = plan_session(app, backend, args)
    return _PLANS[key]


def shared_audio(plan: SessionPlan, backend: Backend) -> SharedAudio:
    """The plan's input in the backend's wire format: decoded once per process."""
    from streamcli.audio.sources import open_source

    o = plan.options
    key = (plan.input.path, backend.sample_rate, backend.encoding, o.chunk_ms, o.duration)
    if key not in _AUDIO:
        try:
            source = open_source(str(plan.input.path), audio_stream=plan.input.audio_stream)
            try:
                decoder = Decoder(
                    source.rate, backend.sample_rate, backend.encoding, o.chunk_ms, o.duration
                )
                for block in source.iter_sync():  # type: ignore[attr-defined]
                    if not decoder.push(block):
                        break
            finally:
                source.close()
            audio = decoder.finish()
            if not audio.chunks:
                raise UsageError(f"{source.label}: no audio to stream")
            _AUDIO[key] = audio
        except StreamcliError as e:
            _AUDIO[key] = e
    found = _AUDIO[key]
    if isinstance(found, StreamcliError):
        raise found
    return found


# ---- one session, in greenlets ------------------------------------------------------------------
class GreenletSession:
    """One session of a sans-I/O backend over a blocking WebSocket, paced like ``play``.

    The calling greenlet connects, paces and sends; a second one receives. The backend is only
    called between two yields of one greenlet or the other, so it needs no lock. Every event
    goes to ``on_event`` (secrets masked) with the time it happened."""

    def __init__(
        self,
        plan: SessionPlan,
        audio: SharedAudio,
        record: SessionRecord,
        on_event: Callable[[ev.Event, float], None],
        backend: Backend | None = None,
    ) -> None:
        self.plan, self.audio, self.record, self.on_event = plan, audio, record, on_event
        self.backend = backend or plan.make_backend()
        self.request = self.backend.connect_request()
        self.secrets = self.request.all_secrets()
        self.changed = Event()  # the backend moved (a message, a tick, the end)
        self.waiting = False  # someone waits on ``changed`` (else setting it costs for nothing)
        self.conn: Any = None

    def emit(self, event: ev.Event) -> None:
        self.on_event(masked(event, self.secrets), clock())

    def pump(self) -> None:
        for frame in self.backend.frames_to_send():
            try:
                self.conn.send(frame)
            except OSError as e:
                self.lost(f"the connection was lost while sending ({e.strerror or e})")
                return
            except Exception as e:  # websocket-client's own: the socket is gone
                self.lost(f"the connection was lost while sending ({e})")
                return
        for event in self.backend.events_received():
            self.emit(event)
        if self.waiting:
            self.changed.set()

    def fail(self, message: str, kind: str) -> None:
        """End the session with an error (what the backend still holds is reported first)."""
        if self.backend.finished:
            return
        self.backend.give_up(clock())
        for event in self.backend.events_received():
            self.emit(event)
        if not self.backend.finished:
            self.backend.finished = True
            self.emit(
                ev.Error(
                    backend=self.backend.name,
                    speaker=self.backend.speaker,
                    message=message,
                    kind=kind,
                )
            )
        self.changed.set()

    def lost(self, message: str) -> None:
        self.fail(message, ev.CONNECTION)

    def run(self) -> None:
        from streamcli.transport.blocking import BlockingConnection

        backend, options = self.backend, self.plan.options
        self.record.started = True
        self.record.connect_started = clock()
        try:
            self.conn = BlockingConnection.open(
                self.request, options.wire, getattr(backend, "handshake_error", None)
            )
        except StreamcliError as e:
            self.fail(e.message, kind_for_status(e.status))
            return
        receiver = gevent.spawn(self.receive)
        try:
            info = {"url": public_url(self.request.url), **getattr(backend, "session_info", {})}
            self.emit(ev.SessionStarted(backend=backend.name, speaker=backend.speaker, info=info))
            backend.start(clock())
            self.pump()
            self.stream()
            if not backend.finished:
                backend.end_audio(clock())
                self.pump()
            # The end-of-stream of a held session waits for its seat (bounded by the backend).
            self.wait(lambda: not backend.holding)
            if not self.wait(lambda: backend.finished, clock() + options.timeout):
                self.fail(
                    f"no end of session from the server within {options.timeout:g} s after "
                    "the audio ended",
                    ev.TIMEOUT,
                )
        finally:
            receiver.kill()
            self.conn.close()

    def stream(self) -> None:
        """The shared audio, paced on this session's own clock from its first chunk."""
        backend, record, speed = self.backend, self.record, self.plan.options.speed
        t0: float | None = None
        for chunk, start in zip(self.audio.chunks, self.audio.starts, strict=True):
            if backend.finished:
                return
            if t0 is None:
                if not self.wait(lambda: backend.ready_for_audio) or backend.finished:
                    return  # waits for the protocol to accept audio
                t0 = record.audio_t0 = clock()
            else:
                due = t0 + start / speed if speed > 0 else clock()
                self.sleep_until(due)
                if backend.finished:
                    return
                if backend.holding:  # a seat wait: hold the audio, go on at the pace once seated
                    held = clock()
                    if not self.wait(lambda: not backend.holding) or backend.finished:
                        return
                    t0 += clock() - held
                elif speed > 0:
                    record.lateness.add(max(0.0, clock() - due))
            backend.send_audio(chunk, clock())
            self.pump()  # a full socket blocks here (this greenlet only): the server's pace

    def sleep_until(self, due: float) -> None:
        """Sleep until ``due``, running the backend's timers on the way. A plain sleep: the
        cheapest wait gevent has (a frame is due every chunk of every session)."""
        while not self.backend.finished:
            deadline = self.run_timers()
            now = clock()
            if now >= due:
                return
            gevent.sleep((due if deadline is None else min(due, deadline)) - now)

    def run_timers(self) -> float | None:
        """Tick the backend while its deadline has come; its next deadline (None: none)."""
        backend = self.backend
        while not backend.finished:
            deadline = backend.next_deadline()
            if deadline is None or deadline > clock():
                return deadline
            backend.tick(clock())
            self.pump()
        return None

    def wait(self, done: Callable[[], bool], until: float | None = None) -> bool:
        """Until ``done()`` (True) or ``until`` (False), running the backend's timers; False
        also when the session ended first."""
        while not done():
            deadline = self.run_timers()
            if self.backend.finished:
                return done()
            now = clock()
            if until is not None and now >= until:
                return False
            limits = [t for t in (deadline, until) if t is not None]
            self.changed.clear()
            self.waiting = True
            try:
                self.changed.wait(min(limits) - now if limits else None)
            finally:
                self.waiting = False
        return True

    def receive(self) -> None:
        backend = self.backend
        while not backend.finished:
            message = self.conn.receive()
            now = clock()
            if message.kind == "text":
                backend.receive_text(message.data, now)
            elif message.kind == "binary":
                backend.receive_binary(message.data, now)
            elif message.kind == "error":  # over the size limit: as the engine's Session
                self.fail(message.reason, ev.PROTOCOL)
                return
            else:
                backend.receive_close(message.code, message.reason, now)
                self.pump()
                if not backend.finished:
                    self.lost(f"the connection was lost ({message.reason or 'no close code'})")
                return
            self.pump()


# ---- Locust -------------------------------------------------------------------------------------
def _fire(user: User, name: str, seconds: float, error: str | None = None) -> None:
    """One figure as a Locust request: the backend is its type, ``error`` makes it a failure."""
    user.environment.events.request.fire(
        request_type=user.backend,  # type: ignore[attr-defined]
        name=name,
        response_time=seconds * 1000.0,
        response_length=0,
        exception=error,
        context={},
    )


class _Figures:
    """Fires one session's figures as Locust requests as they come."""

    def __init__(self, user: StreamcliUser, record: SessionRecord) -> None:
        self.user = user
        self.record = record
        self.finals = 0

    def measure(self, name: str, seconds: float, error: str | None = None) -> None:
        _fire(self.user, name, seconds, error)

    def on_event(self, event: ev.Event, now: float) -> None:
        record = self.record
        seat_wait = record.seat_wait
        record.on_event(event, now)
        if isinstance(event, ev.SessionStarted) and record.connect_started is not None:
            self.measure("connect", now - record.connect_started)
        elif isinstance(event, ev.Partial) and record.first_partial == now:
            self._since_audio("first partial", now)
        elif isinstance(event, ev.Final):
            if record.first_final == now:
                self._since_audio("first final", now)
            for latency in record.final_latencies[self.finals :]:
                self.measure("final latency", latency)
            self.finals = len(record.final_latencies)
        if seat_wait is None and record.seat_wait is not None:
            self.measure("seat wait", record.seat_wait)

    def _since_audio(self, name: str, now: float) -> None:
        since = self.record.since_audio(now)
        if since is not None:
            self.measure(name, since)


class _SessionLateness:
    """One session's pacing lateness: into the worker's histogram, its worst frame kept."""

    def __init__(self, shared: LatenessHistogram) -> None:
        self.shared = shared
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.shared.add(seconds)
        if seconds > self.max:
            self.max = seconds


class StreamcliUser(User):
    """A Locust user that runs one streamcli session after another (real-time paced).

    Subclass it with ``backend`` (melvin, phebi, bodhi, vosk) and ``args`` (the command's
    arguments: the audio file first, then the options, as on the command line)."""

    abstract = True
    backend: ClassVar[str] = ""
    args: ClassVar[Sequence[str]] = ()
    wait_time = constant(0)  # the next session starts when one ends
    failure_pause: ClassVar[float] = 1.0  # after a failed session: a refusing server is not
    # hammered in a hot loop of connections
    sessions: ClassVar[int | None] = None  # each user stops after this many (None: never)

    def on_start(self) -> None:
        self.done = 0
        self.refusal: str | None = None
        try:
            self.plan = session_plan(self.backend, self.args)
        except StreamcliError as e:  # bad arguments: one line per worker, a failure per try
            self.refusal = e.message

    @task
    def stream(self) -> None:
        ok = self.run_session() if self.refusal is None else self._refused(self.refusal)
        self.done += 1
        if self.sessions is not None and self.done >= self.sessions:
            raise StopUser()
        if not ok and self.failure_pause > 0:
            gevent.sleep(self.failure_pause)

    def run_session(self) -> bool:
        """One session; its figures go to Locust's statistics. True when it ended well."""
        started = clock()
        backend = self.plan.make_backend()
        try:
            audio = shared_audio(self.plan, backend)
        except StreamcliError as e:
            return self._refused(e.message)
        lateness = _SessionLateness(LATENESS)
        record = SessionRecord(index=0, speed=self.plan.options.speed, lateness=lateness)
        figures = _Figures(self, record)
        GreenletSession(self.plan, audio, record, figures.on_event, backend).run()
        duration = clock() - started
        if record.audio_t0 is not None:
            figures.measure("pacing lateness", lateness.max)
        if record.ok:
            figures.measure("session", duration)
        else:
            kind, message = failure(record)
            figures.measure("session", duration, f"{kind}: {message}")
        return record.ok

    def _refused(self, message: str) -> bool:
        """The arguments or the input were refused: said once on stderr, a usage failure per
        try."""
        if message not in _REFUSED:
            _REFUSED.add(message)
            print(f"streamcli: error: {message}", file=sys.stderr, flush=True)
        _fire(self, "session", 0.0, f"{ev.USAGE}: {message}")
        return False


_REFUSED: set[str] = set()


def _log_pacing(**_: Any) -> None:
    if not LATENESS.count:
        return
    s = LATENESS.summary()
    print(
        f"streamcli: worker {os.getpid()} pacing lateness over {s['count']} frames: "
        f"p50 {s['p50'] * 1000:.1f} ms, p95 {s['p95'] * 1000:.1f} ms, max {s['max'] * 1000:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


locust.events.test_stop.add_listener(_log_pacing)
