"""Running sessions: one job or many, by a schedule.

Theory of operation. A *job* is one unit of work that runs to its end on its own:
- ``FeedJob``: one source fed to its sessions (one, or one per channel with
  ``--split-channels``) on one clock -- a CLI run, one file of a batch run;
- ``PlayJob``: shared, pre-converted audio into one session on its own clock -- one load-test
  session. (A Locust user's session is ``locust.GreenletSession``: the same backends and
  pacing in greenlets; docs/locust.md says why.)

``run_sessions(jobs, schedule, interrupts)`` starts them: all together, spread evenly over
``schedule.ramp`` seconds, and at most ``schedule.jobs`` at a time. The first Ctrl-C
(``interrupts.graceful``) stops starting new jobs and lets the running ones end their audio and
collect their results; the second (``interrupts.abort``) cancels them, and each job gives up its
sessions, so what was received is flushed to the sinks. ``run_sessions`` never raises for a
job: a job's exception is kept in its ``JobState``. ``run_source`` runs the one ``FeedJob`` of a
CLI command and turns its errors into an exit status.

Errors are collected through ``Session.subscribe`` (an observer), never by patching a session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamcli import events as ev
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import AudioSource
from streamcli.engine.feed import SharedAudio, feed, play, stop_feed
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.session import Session, SessionOptions
from streamcli.exit import ExitStatus, StreamcliError, status_for_error_kind, worst_status
from streamcli.metrics import SessionRecord


class Job(Protocol):
    async def run(self, stop: asyncio.Event) -> None:
        """Run to the end; when ``stop`` is set, end the audio early and collect the results."""

    def abort(self) -> None:
        """Called after the job was cancelled (a second Ctrl-C): give up what is left."""


@dataclass(frozen=True)
class Schedule:
    ramp: float = 0.0  # the starts are spread evenly over this many seconds
    jobs: int = 0  # at most this many jobs at once (0: no limit)


@dataclass
class JobState:
    started: bool = False
    aborted: bool = False  # cancelled by an abort before it ended
    error: BaseException | None = None  # what the job raised (not its sessions' error events)


@dataclass
class RunReport:
    states: list[JobState]
    wall_seconds: float = 0.0
    interrupted: bool = False  # Ctrl-C or SIGTERM, once or more
    aborted: bool = False  # the jobs were cancelled (a second Ctrl-C, or stdout went away)

    @property
    def started(self) -> int:
        return sum(s.started for s in self.states)


async def run_sessions(
    jobs: Sequence[Job],
    schedule: Schedule,
    interrupts: Interrupts,
    on_tick: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """Run every job by the schedule until all end or an abort; never raises for a job."""
    stop = interrupts.graceful
    report = RunReport([JobState() for _ in jobs])
    slots = asyncio.Semaphore(schedule.jobs) if schedule.jobs > 0 else None
    ramp = Pacer(1.0)
    ramp.start()

    async def start(i: int, job: Job) -> None:
        state = report.states[i]
        delay = schedule.ramp * i / len(jobs)
        if delay > 0 and not await _wait_unless(ramp.wait_until(delay), stop):
            return
        if slots is not None:
            if not await _wait_unless(slots.acquire(), stop):
                return
            if stop.is_set():
                slots.release()  # stopped while it waited for its turn: do not start it
                return
        state.started = True
        try:
            await job.run(stop)
        except asyncio.CancelledError:
            state.aborted = True
            job.abort()
            raise
        except Exception as e:  # a job's own failure: reported, the others go on
            state.error = e
        finally:
            if slots is not None:
                slots.release()

    loop = asyncio.get_running_loop()
    t_start = loop.time()
    interrupts.install()
    tasks = [asyncio.create_task(start(i, job)) for i, job in enumerate(jobs)]
    everything: asyncio.Future[list[Any]] = asyncio.gather(*tasks, return_exceptions=True)
    aborter = asyncio.create_task(interrupts.abort.wait())
    ticker = asyncio.create_task(_tick(lambda: on_tick(report))) if on_tick else None
    try:
        waiting: set[asyncio.Future[Any]] = {everything, aborter}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            report.aborted = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        aborter.cancel()
        if ticker is not None:
            ticker.cancel()
        interrupts.uninstall()
        report.wall_seconds = loop.time() - t_start
        report.interrupted = interrupts.count > 0
    return report


async def _wait_unless(waiting: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await ``waiting`` unless ``stop`` is set first; True when it completed."""
    task = asyncio.ensure_future(waiting)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        return False
    return True


async def _tick(callback: Callable[[], None], interval: float = 0.5) -> None:
    pacer = Pacer(1.0)
    pacer.start()
    k = 0
    while True:
        k += 1
        await pacer.wait_until(k * interval)
        callback()


# ---- one source, its sessions on one clock ------------------------------------------------------
class FeedJob:
    """Connect every session, feed the source to them, end the audio, wait for the ends.

    ``on_audio`` sees every source block; ``on_audio_end`` is called once all audio was handed
    to the sessions (the live view then shows "finishing")."""

    def __init__(
        self,
        source: AudioSource,
        sessions: list[Session],
        options: SessionOptions,
        on_audio: Callable[[object], None] | None = None,
        on_audio_end: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.sessions = sessions
        self.options = options
        self.on_audio = on_audio
        self.on_audio_end = on_audio_end
        self.errors: list[ev.Error] = []
        self.pacer: Pacer | None = None  # its ``t0`` is the wall time of audio time 0
        self._runners: list[asyncio.Task[None]] = []
        for s in sessions:
            s.subscribe(self._note)

    def _note(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error):
            self.errors.append(event)

    def status(self) -> ExitStatus:
        """The worst of the sessions' errors, as an exit status (OK when none failed)."""
        return worst_status(status_for_error_kind(e.kind) for e in self.errors)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._run(stop)
        except asyncio.CancelledError:
            for runner in self._runners:
                runner.cancel()  # each closes its socket on the way out (bounded)
            await asyncio.gather(*self._runners, return_exceptions=True)
            raise

    def abort(self) -> None:
        now = asyncio.get_running_loop().time()
        for s in self.sessions:
            s.backend.give_up(now)
            s.pump()

    async def _run(self, stop: asyncio.Event) -> None:
        sessions, source, options = self.sessions, self.source, self.options
        connecting: asyncio.Future[list[bool]] = asyncio.ensure_future(
            asyncio.gather(*(s.connect() for s in sessions))
        )
        stopper: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
        waiting: set[asyncio.Future[Any]] = {connecting, stopper}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not connecting.done():  # Ctrl-C while connecting: nothing was sent, stop now
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            return
        live = [s for s, ok in zip(sessions, connecting.result(), strict=True) if ok]
        if not live:
            return
        self._runners.extend(asyncio.create_task(s.run()) for s in live)
        pacer = self.pacer = Pacer(0.0 if source.live else options.speed)
        feeder = asyncio.create_task(
            feed(source, live, pacer, options.chunk_ms, options.duration, stop, self.on_audio)
        )
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({feeder, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        await stop_feed(source, feeder)
        if not feeder.cancelled() and feeder.exception() is not None:
            exc = feeder.exception()
            for s in live:
                s.fail(str(exc), ev.USAGE if isinstance(exc, StreamcliError) else ev.SERVER)
            await asyncio.gather(*self._runners, return_exceptions=True)
            raise exc  # type: ignore[misc]
        if self.on_audio_end is not None:
            self.on_audio_end()
        for s in live:
            s.end_audio()
        await asyncio.gather(*(s.wait_done(options.timeout) for s in live))
        await asyncio.gather(*self._runners, return_exceptions=True)


@dataclass
class Outcome:
    status: ExitStatus
    interrupted: bool = False

    @classmethod
    def aborted(cls, interrupts: Interrupts) -> Outcome:
        """A second Ctrl-C (130), or stdout went away (nobody wants more: 0)."""
        return cls(
            ExitStatus.OK if interrupts.output_closed else ExitStatus.INTERRUPTED, interrupted=True
        )


async def run_alone(job: Job, interrupts: Interrupts) -> RunReport:
    """A CLI command's one job; its own exception (not its sessions' errors) is raised here."""
    report = await run_sessions([job], Schedule(), interrupts)
    error = report.states[0].error
    if error is not None and not report.aborted:
        raise error
    return report


async def run_source(
    source: AudioSource,
    sessions: list[Session],
    options: SessionOptions,
    interrupts: Interrupts | None = None,
    on_audio: Callable[[object], None] | None = None,
    on_audio_end: Callable[[], None] | None = None,
) -> Outcome:
    """One CLI run: one ``FeedJob``. Never raises StreamcliError from a session (a source that
    fails mid-read raises its error)."""
    interrupts = interrupts or Interrupts()
    job = FeedJob(source, sessions, options, on_audio, on_audio_end)
    report = await run_alone(job, interrupts)
    if report.aborted:
        return Outcome.aborted(interrupts)
    status = job.status()
    if report.interrupted and not source.live and status == ExitStatus.OK:
        status = ExitStatus.INTERRUPTED
    return Outcome(status, interrupted=report.interrupted)


# ---- shared audio into one session on its own clock ---------------------------------------------
@dataclass
class PlayJob:
    """Connect, stream the shared audio on this session's own clock, end, wait for the end;
    every event and timestamp goes to ``record``."""

    session: Session
    audio: SharedAudio
    options: SessionOptions
    record: SessionRecord
    repeat: int = 1
    on_connect: Callable[[], None] | None = None
    sessions: list[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = [self.session]

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.record.started = True
        self.record.connect_started = loop.time()
        connected = await self.session.connect()
        if self.on_connect is not None:
            self.on_connect()
        if not connected:
            return
        runner = asyncio.create_task(self.session.run())
        try:
            await play(self.session, self.audio, self.options.speed, self.record, stop, self.repeat)
            self.session.end_audio()
            await self.session.wait_done(self.options.timeout)
        except asyncio.CancelledError:
            runner.cancel()  # a second Ctrl-C: stop without waiting for the server
            raise
        finally:
            await asyncio.gather(runner, return_exceptions=True)

    def abort(self) -> None:
        """Nothing to flush: a load-test session's results are its record."""
