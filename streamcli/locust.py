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
users as gevent greenlets on a monkey-patched standard library; streamcli's engine is asyncio.
Each worker process runs one asyncio event loop in one native thread (``_Bridge``), started on
first use. A user's task hands one session (an ``engine.run.PlayJob``: connect, stream the
shared audio paced on its own clock, end, wait for the end) to that loop and waits for it
cooperatively, so thousands of users cost one thread. The input is decoded, resampled and
encoded once per worker (``engine.feed.decode_once``) and shared by every session.

Every figure is measured on the asyncio side (event loop clock, by ``metrics.SessionRecord``)
and handed back to the gevent side through a gevent async watcher (thread-safe); a dispatcher
greenlet fires Locust's ``request`` events there, so Locust's statistics are only ever touched
from its own thread. Request type: the backend's name. Names (response times in ms):
``connect``, ``first partial`` and ``first final`` (from the start of the audio),
``final latency`` (one per final: arrival minus the wall time of its last word), ``seat wait``
(Melvin), ``pacing lateness`` (the session's worst frame: the client's own lateness, so a slow
worker is never mistaken for a slow server) and ``session`` (its duration; a failed session is
a failure of ``session`` whose error starts with its kind: ``auth:``, ``connection:``,
``server:``, ``protocol:``, ``timeout:``, ``usage:``). At the end of a run each worker logs
its frames' pacing lateness (p50/p95/max).
"""

from __future__ import annotations

import locust  # first: Locust's gevent monkey-patching comes before asyncio and ssl load

# isort: split
import asyncio
import collections
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gevent
from gevent import monkey
from gevent.event import AsyncResult
from gevent.event import Event as GeventEvent
from locust import User, constant, task

from streamcli import events as ev
from streamcli.commands.plan import STREAMING_BACKENDS, SessionPlan, plan_session
from streamcli.engine.feed import SharedAudio
from streamcli.exit import StreamcliError
from streamcli.metrics import LatenessHistogram, SessionRecord, failure

log = logging.getLogger("streamcli.locust")

__all__ = ["STREAMING_BACKENDS", "StreamcliUser", "session_plan"]


class _Bridge:
    """One asyncio event loop per process, in a native thread, and the way back to gevent."""

    _current: ClassVar[_Bridge | None] = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop: asyncio.AbstractEventLoop
        self.lateness = LatenessHistogram()  # every frame of this worker's sessions
        self._audio: dict[tuple[Any, ...], asyncio.Future[SharedAudio]] = {}
        self._inbox: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake = GeventEvent()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._wake.set)
        self._dispatcher = gevent.spawn(self._dispatch)
        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        self._ready: AsyncResult = AsyncResult()  # the loop, once its thread made it
        start_new_thread(self._run, (self._ready,))

    @classmethod
    def get(cls) -> _Bridge:
        """This process's bridge (a forked worker, ``--processes``, makes its own)."""
        if cls._current is None or cls._current.pid != os.getpid():
            cls._current = cls()  # before any wait: the other users' greenlets share it
        bridge = cls._current
        bridge.loop = bridge._ready.get()
        return bridge

    def _run(self, ready: AsyncResult) -> None:
        # Made in this thread: under gevent its selector belongs to this thread's own hub.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.post(ready.set, loop)
        loop.run_forever()

    # ---- asyncio thread -> gevent ------------------------------------------------------------
    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the gevent side (safe from the asyncio thread)."""
        self._inbox.append((fn, args))
        self._watcher.send()

    def _dispatch(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._inbox:
                fn, args = self._inbox.popleft()
                try:
                    fn(*args)
                except Exception:
                    log.exception("streamcli: a Locust event handler failed")

    # ---- gevent -> asyncio thread ------------------------------------------------------------
    def run(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on the loop; wait for it cooperatively (this greenlet
        only). Killing the greenlet (Locust stopping a user) cancels the coroutine."""
        done: AsyncResult = AsyncResult()
        holder: dict[str, asyncio.Task[Any]] = {}

        def finished(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                self.post(done.set, None)
            elif t.exception() is not None:
                self.post(done.set_exception, t.exception())
            else:
                self.post(done.set, t.result())

        def begin() -> None:
            holder["task"] = self.loop.create_task(make())
            holder["task"].add_done_callback(finished)

        self.loop.call_soon_threadsafe(begin)
        try:
            return done.get()
        except BaseException:
            self.loop.call_soon_threadsafe(lambda: holder["task"].cancel() if holder else None)
            raise

    async def shared_audio(self, plan: SessionPlan, rate: int, encoding: str) -> SharedAudio:
        """The plan's input in the backend's wire format: decoded once per process."""
        from streamcli.audio.sources import open_source
        from streamcli.engine.feed import decode_once

        o = plan.options
        key = (plan.input.path, rate, encoding, o.chunk_ms, o.duration)
        if key not in self._audio:
            future: asyncio.Future[SharedAudio] = self.loop.create_future()
            self._audio[key] = future
            try:
                source = open_source(str(plan.input.path))
                try:
                    audio = await decode_once(source, rate, encoding, o.chunk_ms, o.duration)
                finally:
                    source.close()
                if not audio.chunks:
                    raise ValueError(f"{plan.input.path}: no audio to stream")
                future.set_result(audio)
            except BaseException as e:
                future.set_exception(e)
        return await asyncio.shield(self._audio[key])


_PLANS: dict[tuple[str, tuple[str, ...]], SessionPlan] = {}


def session_plan(backend: str, args: Sequence[str]) -> SessionPlan:
    """``streamcli BACKEND ARGS`` as a plan (cached per process)."""
    key = (backend, tuple(args))
    if key not in _PLANS:
        from streamcli.cli import app

        _PLANS[key] = plan_session(app, backend, args)
    return _PLANS[key]


class _Reporter:
    """Fires one session's figures as Locust requests (on the gevent side)."""

    def __init__(self, user: User, backend: str) -> None:
        self.fire = user.environment.events.request.fire
        self.backend = backend

    def measure(self, name: str, seconds: float) -> None:
        self.fire(
            request_type=self.backend,
            name=name,
            response_time=seconds * 1000.0,
            response_length=0,
            exception=None,
            context={},
        )

    def fail(self, name: str, seconds: float, kind: str, message: str) -> None:
        self.fire(
            request_type=self.backend,
            name=name,
            response_time=seconds * 1000.0,
            response_length=0,
            exception=f"{kind}: {message}",
            context={},
        )


class _SessionLateness:
    """One session's pacing lateness: into the worker's histogram, its worst frame kept."""

    def __init__(self, shared: LatenessHistogram) -> None:
        self.shared = shared
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.shared.add(seconds)
        if seconds > self.max:
            self.max = seconds


async def _session(bridge: _Bridge, plan: SessionPlan, report: _Reporter) -> bool:
    """One session (asyncio side): a ``PlayJob`` whose figures go to ``report`` as they come;
    True when it ended well."""
    from streamcli.engine.run import PlayJob
    from streamcli.engine.session import Session

    loop = asyncio.get_running_loop()
    started = loop.time()
    backend = plan.make_backend()
    try:
        audio = await bridge.shared_audio(plan, backend.sample_rate, backend.encoding)
    except Exception as e:  # the input: the same failure for every session of this worker
        message = getattr(e, "message", None) or str(e)
        bridge.post(report.fail, "session", 0.0, ev.USAGE, message)
        return False
    lateness = _SessionLateness(bridge.lateness)
    record = SessionRecord(index=0, speed=plan.options.speed, lateness=lateness)
    finals = 0

    def on_event(event: ev.Event) -> None:
        nonlocal finals
        now = loop.time()
        seat_wait = record.seat_wait
        record.on_event(event, now)
        if isinstance(event, ev.SessionStarted) and record.reconnects == 0:
            if record.connect_started is not None:
                bridge.post(report.measure, "connect", now - record.connect_started)
        elif isinstance(event, ev.Partial) and record.first_partial == now:
            since = record.since_audio(now)
            if since is not None:
                bridge.post(report.measure, "first partial", since)
        elif isinstance(event, ev.Final):
            if record.first_final == now:
                since = record.since_audio(now)
                if since is not None:
                    bridge.post(report.measure, "first final", since)
            for latency in record.final_latencies[finals:]:
                bridge.post(report.measure, "final latency", latency)
            finals = len(record.final_latencies)
        if seat_wait is None and record.seat_wait is not None:
            bridge.post(report.measure, "seat wait", record.seat_wait)

    session = Session(backend, on_event, plan.options, factory=plan.make_backend)
    job = PlayJob(session, audio, plan.options, record)
    try:
        await job.run(asyncio.Event())
    except asyncio.CancelledError:  # Locust stopped this user: not a failure, no figures
        raise
    duration = loop.time() - started
    if record.audio_t0 is not None:
        bridge.post(report.measure, "pacing lateness", lateness.max)
    if record.ok:
        bridge.post(report.measure, "session", duration)
    else:
        bridge.post(report.fail, "session", duration, *failure(record))
    return record.ok


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

    def on_start(self) -> None:
        self.refusal: str | None = None
        try:
            self.plan = session_plan(self.backend, self.args)
        except StreamcliError as e:  # bad arguments: one line per worker, a failure per try
            self.refusal = e.message
            return
        self.bridge = _Bridge.get()
        self.report = _Reporter(self, self.plan.backend)

    @task
    def stream(self) -> None:
        if self.refusal is not None:
            _refused(self, self.refusal)
            ok = False
        else:
            ok = self.bridge.run(lambda: _session(self.bridge, self.plan, self.report))
        if not ok and self.failure_pause > 0:
            gevent.sleep(self.failure_pause)


_REFUSED: set[str] = set()


def _refused(user: StreamcliUser, message: str) -> None:
    """The arguments were refused: said once on stderr, and a usage failure per try."""
    if message not in _REFUSED:
        _REFUSED.add(message)
        print(f"streamcli: error: {message}", file=sys.stderr, flush=True)
    user.environment.events.request.fire(
        request_type=user.backend,
        name="session",
        response_time=0.0,
        response_length=0,
        exception=f"{ev.USAGE}: {message}",
        context={},
    )


def _log_pacing(**_: Any) -> None:
    bridge = _Bridge._current
    if bridge is None or bridge.pid != os.getpid() or not bridge.lateness.count:
        return
    s = bridge.lateness.summary()
    print(
        f"streamcli: worker {os.getpid()} pacing lateness over {s['count']} frames: "
        f"p50 {s['p50'] * 1000:.1f} ms, p95 {s['p95'] * 1000:.1f} ms, max {s['max'] * 1000:.1f} ms",
        file=sys.stderr,
        flush=True,
    )


locust.events.test_stop.add_listener(_log_pacing)
