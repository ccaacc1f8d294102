"""Load-test mode (``--concurrency N [--ramp S] [--repeat M]``): how many streams a server holds.

Theory of operation. The input is decoded, resampled and encoded once, into one list of chunks
in the backend's wire format that every session shares (memory does not grow with N). Then N
sessions run in this process, each an ``engine.run.PlayJob``: a ``Session`` with its own
``Pacer``, whose clock starts when its first chunk is accepted, so a session that waited for a
handshake or a seat is never counted as late. Starts are spread evenly over ``--ramp`` seconds
(``engine.run.run_sessions``); each session streams the input ``--repeat`` times in a row on
one continuous audio timeline. Only the Backend/Session abstractions are used, so every
WebSocket backend works. The figures come from ``metrics``; the table, the JSON line and the
progress line are ``present.loadtest``.

Each session records, from its events (all times on the event loop's monotonic clock):
connect time; time to the first partial and the first final (from the start of its audio);
final latency (arrival minus the wall time of the final's last word, ``t0 + end / speed``);
seat wait (Melvin: from the first "waiting" notice to the server's next answer); and the
client's own pacing lateness (``Pacer.wait_until``), so a slow client is never mistaken for a
slow server. Time spent blocked on a full send queue (server backpressure) is reported apart.
With ``--reconnect``, a dropped session reconnects like a normal run (the stream resumes the
audio); its pacer is shifted by the outage, and the reconnects are counted.

The summary is one JSON object on stdout with ``--json`` or when stdout is not a terminal
(``{"type": "loadtest", ...}``, times in seconds), else a Rich table. Exit status: the worst
failed session's code (3 auth, 4 connection, 5 server, 6 timeout, ...), else 5 when the p95
final latency exceeds ``--max-p95-latency`` (or none could be measured), else 0; 130 when
interrupted.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamcli import events as ev
from streamcli import metrics
from streamcli.audio.sources import AudioSource
from streamcli.backends.base import Backend
from streamcli.engine.feed import decode_once
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import PlayJob, RunReport, Schedule, run_sessions
from streamcli.engine.session import Session, SessionOptions
from streamcli.exit import ExitStatus, UsageError, worst_status
from streamcli.metrics import LatenessHistogram, SessionRecord, _r, present, summarize
from streamcli.specs import LoadSpec, OutputSpec

BackendFactory = Callable[[], Backend]


@dataclass
class LoadTest:
    backend_name: str
    concurrency: int
    ramp: float
    repeat: int
    speed: float
    chunk_ms: int
    audio_seconds: float = 0.0
    records: list[SessionRecord] = field(default_factory=list)
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)  # all sessions'
    wall_seconds: float = 0.0
    interrupted: bool = False


def play_job(
    backend: Backend,
    record: SessionRecord,
    audio: Any,
    options: SessionOptions,
    repeat: int,
    factory: BackendFactory | None,
) -> PlayJob:
    """One load-test session: its events and timestamps go to ``record``."""

    def on_event(event: ev.Event) -> None:
        record.on_event(event, asyncio.get_running_loop().time())

    session = Session(backend, on_event, options, factory=factory)
    return PlayJob(session, audio, options, record, repeat)


async def run_load(
    test: LoadTest,
    audio: Any,
    backends: list[Backend],
    options: SessionOptions,
    interrupts: Interrupts,
    on_progress: Callable[[LoadTest, int], None] | None = None,
    factory: BackendFactory | None = None,
) -> None:
    """Run every session of ``test`` (ramped, paced, repeated) until all end or an abort."""
    test.records = [
        SessionRecord(index=i, speed=options.speed, lateness=test.lateness)
        for i in range(len(backends))
    ]
    jobs = [
        play_job(b, r, audio, options, test.repeat, factory)
        for b, r in zip(backends, test.records, strict=True)
    ]
    # A full garbage collection walks every object: with hundreds of sessions that is a pause
    # of 20-30 ms that every pacer feels. Freezing what lives for the whole run (libraries,
    # the shared audio, then the sessions once all are connected) leaves the collector only
    # the per-frame garbage (bench/README.md, "Load test").
    gc.collect()
    gc.freeze()
    connects = 0

    def on_connect() -> None:
        nonlocal connects
        connects += 1
        if connects == len(jobs):
            gc.freeze()

    for job in jobs:
        job.on_connect = on_connect
    tick = (lambda report: on_progress(test, report.started)) if on_progress else None
    report: RunReport | None = None
    try:
        report = await run_sessions(jobs, Schedule(ramp=test.ramp), interrupts, tick)
    finally:
        gc.unfreeze()
    for r, state in zip(test.records, report.states, strict=True):
        if state.aborted:
            r.aborted = not r.ok and r.error is None
        if state.error is not None and r.error is None:
            r.error = ev.Error(backend=test.backend_name, message=str(state.error), kind=ev.SERVER)
    test.wall_seconds = report.wall_seconds
    test.interrupted = report.interrupted


# ---- summary ------------------------------------------------------------------------------------
def summary(test: LoadTest, max_p95_latency: float | None) -> dict[str, Any]:
    records = test.records
    failures = metrics.failures(records)
    latencies = [x for r in records for x in r.final_latencies]
    latency = summarize(latencies)
    seat_waits = [r.seat_wait for r in records if r.seat_wait is not None]
    out: dict[str, Any] = {
        "type": "loadtest",
        "backend": test.backend_name,
        "sessions": len(records),
        "ok": sum(r.ok for r in records),
        "failed": sum(r.failed for r in records),
        "not_started": sum(not r.started for r in records),
        "aborted": sum(r.aborted for r in records),
        "failures": failures,
        "concurrency": test.concurrency,
        "ramp": test.ramp,
        "repeat": test.repeat,
        "speed": test.speed,
        "chunk_ms": test.chunk_ms,
        "audio_seconds": _r(test.audio_seconds * test.repeat),  # per session
        "wall_seconds": _r(test.wall_seconds),
        "connect": summarize(
            r.connected - r.connect_started
            for r in records
            if r.connected is not None and r.connect_started is not None
        ),
        "first_partial": summarize(present(r.since_audio(r.first_partial) for r in records)),
        "first_final": summarize(present(r.since_audio(r.first_final) for r in records)),
        "final_latency": latency,
        "seat_wait": summarize(seat_waits),
        "pacing_lateness": test.lateness.summary(),
        "backpressure": {
            "sessions": sum(r.blocked_sends > 0 for r in records),
            "sends": sum(r.blocked_sends for r in records),
            "seconds": _r(sum(r.blocked_seconds for r in records)),
        },
        "reconnects": sum(r.reconnects for r in records),
        "max_p95_latency": max_p95_latency,
        "latency_ok": None,
        "interrupted": test.interrupted,
    }
    if max_p95_latency is not None:
        p95 = latency["p95"]
        out["latency_ok"] = p95 is not None and p95 <= max_p95_latency
    out["exit_code"] = int(exit_status(out))
    return out


def exit_status(result: dict[str, Any]) -> ExitStatus:
    if result["failures"]:
        codes = [ExitStatus(f["exit_code"]) for f in result["failures"]]
        return worst_status(codes)
    if result["interrupted"]:
        return ExitStatus.INTERRUPTED
    if result["latency_ok"] is False:
        return ExitStatus.SERVER
    return ExitStatus.OK


# ---- the run ------------------------------------------------------------------------------------
def run_load_test(
    source: AudioSource,
    backend_name: str,
    make_backend: BackendFactory,
    options: SessionOptions,
    load: LoadSpec,
    output: OutputSpec,
) -> int:
    """Run ``load.concurrency`` sessions of the input, print the summary, return the exit code."""
    from streamcli.present.loadtest import Progress, print_result

    if load.report is not None:
        from streamcli.present.report import require_report

        require_report()
    n = load.concurrency
    backends = [make_backend() for _ in range(n)]
    first = backends[0]
    if any((b.sample_rate, b.encoding) != (first.sample_rate, first.encoding) for b in backends):
        raise UsageError("--concurrency: the sessions disagree on the audio format")
    test = LoadTest(
        backend_name=backend_name,
        concurrency=n,
        ramp=load.ramp,
        repeat=load.repeat,
        speed=options.speed,
        chunk_ms=options.chunk_ms,
    )
    interrupts = Interrupts()
    progress = Progress.on_terminal(n, quiet=output.quiet or output.json)

    async def main() -> None:
        audio = await decode_once(
            source, first.sample_rate, first.encoding, options.chunk_ms, options.duration
        )
        source.close()
        if not audio.chunks:
            raise UsageError(f"{source.label}: no audio to stream")
        test.audio_seconds = audio.seconds
        await run_load(
            test,
            audio,
            backends,
            options,
            interrupts,
            progress.update if progress else None,
            make_backend,  # a fresh backend per reconnect
        )

    try:
        asyncio.run(main())
    finally:
        source.close()
        if progress is not None:
            progress.close()
    result = summary(test, load.max_p95_latency)
    print_result(result, output)
    if load.report is not None:
        from streamcli.present import report

        report.write(load.report, report.load_html(test, result))
    return int(result["exit_code"])
