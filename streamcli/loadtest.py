"""Load-test mode (``--concurrency N [--ramp S] [--repeat M]``): how many streams a server holds.

Theory of operation. The input is decoded, resampled and encoded once, into one list of chunks
in the backend's wire format that every session shares (memory does not grow with N). Then N
sessions run in this process, each a ``session.Stream`` with its own ``Pacer``: its clock starts
when its first chunk is accepted, so a session that waited for a handshake or a seat is never
counted as late. Starts are spread evenly over ``--ramp`` seconds; each session streams the
input ``--repeat`` times in a row on one continuous audio timeline. Only the Backend/Stream
abstractions are used, so every WebSocket backend works.

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
import contextlib
import gc
import json
import math
import os
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamcli import events as ev
from streamcli.audio.convert import ENCODINGS, Chunker, Converter, chunk_bytes_for
from streamcli.audio.pacer import Pacer
from streamcli.audio.sources import AudioSource
from streamcli.backends.base import Backend
from streamcli.commands.options import Common
from streamcli.exit import ExitStatus, UsageError, status_for_error_kind
from streamcli.session import Interrupts, SessionOptions, Stream
from streamcli.transport.websocket import WireOptions

BackendFactory = Callable[[str | None], Backend]
QUANTILES = (("p50", 0.50), ("p95", 0.95))
# Most specific cause last: when sessions fail differently, the exit code names that one.
SEVERITY = (
    ExitStatus.TIMEOUT,
    ExitStatus.SERVER,
    ExitStatus.CONNECTION,
    ExitStatus.AUTH,
    ExitStatus.USAGE,
)


# ---- audio, decoded once ------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedAudio:
    """The input in one backend's wire format, cut into chunks that every session sends."""

    chunks: tuple[bytes, ...]
    starts: tuple[float, ...]  # audio time (seconds) at which each chunk begins
    seconds: float


async def decode_once(
    source: AudioSource, rate: int, encoding: str, chunk_ms: int, duration: float | None
) -> SharedAudio:
    converter = Converter(source.rate, rate, encoding)
    chunker = Chunker(chunk_bytes_for(rate, encoding, chunk_ms), ENCODINGS[encoding])
    chunks: list[bytes] = []
    limit = None if duration is None else int(duration * source.rate)
    read = 0
    async for block in source.blocks():
        if limit is not None:
            block = block[: max(0, limit - read)]
        read += len(block)
        chunks += chunker.push(converter.process(block))
        if limit is not None and read >= limit:
            break
    chunks += chunker.push(converter.flush())
    rest = chunker.rest()
    if rest:
        chunks.append(rest)
    bytes_per_second = rate * ENCODINGS[encoding]
    starts, t = [], 0.0
    for chunk in chunks:
        starts.append(t)
        t += len(chunk) / bytes_per_second
    return SharedAudio(tuple(chunks), tuple(starts), t)


# ---- statistics ---------------------------------------------------------------------------------
def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def summarize(values: Iterable[float]) -> dict[str, Any]:
    data = sorted(values)
    out: dict[str, Any] = {"count": len(data)}
    for name, q in QUANTILES:
        out[name] = _r(quantile(data, q)) if data else None
    out["max"] = _r(data[-1]) if data else None
    return out


class LatenessHistogram:
    """Pacing lateness of every frame, in flat memory: 0.1 ms bins up to 1 s, then 1 s bins.

    A 200-session, one-hour run sends 7.2 million frames; a list of floats would grow with it.
    Quantiles are the upper edge of their bin (never optimistic); the maximum is exact.
    """

    FINE = 1e-4
    FINE_BINS = 10_000  # up to 1 s
    COARSE_BINS = 3_600  # then whole seconds up to an hour

    def __init__(self) -> None:
        self.bins = array("Q", bytes(8 * (self.FINE_BINS + self.COARSE_BINS + 1)))
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if seconds < 1.0:
            index = int(seconds / self.FINE)
        else:
            index = self.FINE_BINS + min(int(seconds), self.COARSE_BINS)
        self.bins[index] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                upper = (i + 1) * self.FINE if i < self.FINE_BINS else i - self.FINE_BINS + 1.0
                return min(upper, self.max)
        return self.max

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        for name, q in QUANTILES:
            out[name] = _r(self.quantile(q)) if self.count else None
        out["max"] = _r(self.max) if self.count else None
        return out


def _r(seconds: float) -> float:
    return round(seconds, 6)


# ---- one session --------------------------------------------------------------------------------
@dataclass
class SessionRecord:
    """What one session saw. Times are event-loop clock readings (seconds)."""

    index: int
    speed: float
    started: bool = False  # False: stopped (Ctrl-C) before its turn in the ramp
    aborted: bool = False  # cancelled by a second Ctrl-C before it ended
    connect_started: float | None = None
    connected: float | None = None
    audio_t0: float | None = None  # wall time of audio time 0 (the first chunk accepted)
    first_partial: float | None = None
    first_final: float | None = None
    final_latencies: list[float] = field(default_factory=list)
    waiting_since: float | None = None
    seat_wait: float | None = None
    error: ev.Error | None = None
    ended: bool = False
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)  # may be shared
    blocked_sends: int = 0
    blocked_seconds: float = 0.0
    reconnects: int = 0
    reconnect_seconds: float = 0.0  # audio paused while reconnecting

    def on_event(self, event: ev.Event, now: float) -> None:
        if isinstance(event, ev.Status):
            if event.state == "waiting" and self.waiting_since is None and self.seat_wait is None:
                self.waiting_since = now
            return
        if isinstance(event, ev.Partial | ev.Final | ev.End) and self.waiting_since is not None:
            # Melvin says nothing when a seat frees up; its first answer after the wait is it.
            self.seat_wait, self.waiting_since = now - self.waiting_since, None
        if isinstance(event, ev.SessionStarted):
            if self.connected is None:
                self.connected = now
            else:
                self.reconnects += 1
        elif isinstance(event, ev.Partial):
            if self.first_partial is None:
                self.first_partial = now
        elif isinstance(event, ev.Final):
            self._on_final(event, now)
        elif isinstance(event, ev.End):
            self.ended = True
        elif isinstance(event, ev.Error) and self.error is None:
            self.error = event

    def _on_final(self, final: ev.Final, now: float) -> None:
        if final.unconfirmed:
            return  # a tail reported at the end, not a server final
        if self.first_final is None:
            self.first_final = now
        if final.end is not None and self.audio_t0 is not None and self.speed > 0:
            audio_wall = self.audio_t0 + final.end / self.speed + self.reconnect_seconds
            self.final_latencies.append(now - audio_wall)

    @property
    def ok(self) -> bool:
        return self.error is None and self.ended

    @property
    def failed(self) -> bool:
        return self.started and not self.ok and not self.aborted

    def since_audio(self, t: float | None) -> float | None:
        return None if t is None or self.audio_t0 is None else t - self.audio_t0


class SessionRunner:
    """Connect, stream the shared audio on this session's own clock, end, wait for the end."""

    def __init__(
        self,
        record: SessionRecord,
        backend: Backend,
        audio: SharedAudio,
        options: SessionOptions,
        repeat: int,
        stop: asyncio.Event,
        factory: Callable[[], Backend] | None = None,
    ) -> None:
        self.record = record
        self.audio = audio
        self.options = options
        self.repeat = repeat
        self.stop = stop
        self.stream = Stream(backend, self._emit, options, factory=factory)
        self.on_connect: Callable[[], None] | None = None

    def _emit(self, event: ev.Event) -> None:
        self.record.on_event(event, asyncio.get_running_loop().time())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.record.started = True
        self.record.connect_started = loop.time()
        connected = await self.stream.connect()
        if self.on_connect is not None:
            self.on_connect()
        if not connected:
            return
        runner = asyncio.create_task(self.stream.run())
        try:
            await self._stream_audio()
            self.stream.end_audio()
            await self.stream.wait_done(self.options.timeout)
        except asyncio.CancelledError:
            runner.cancel()  # a second Ctrl-C: stop without waiting for the server
            raise
        finally:
            await asyncio.gather(runner, return_exceptions=True)

    async def _stream_audio(self) -> None:
        stream, record = self.stream, self.record
        speed = self.options.speed
        pacer = Pacer(speed)
        clock = pacer.clock
        loop = asyncio.get_running_loop()
        period = self.audio.seconds
        for round_ in range(self.repeat):
            for chunk, start in zip(self.audio.chunks, self.audio.starts, strict=True):
                # Over for good: not ``backend.finished``, which a reconnect may repair (the
                # stream then waits in ``offer`` and goes on with a fresh backend).
                if record.ended or record.error is not None or self.stop.is_set():
                    return
                audio_time = round_ * period + start
                if record.audio_t0 is None:
                    await stream.offer(chunk)  # waits for the protocol to accept audio
                    pacer.start()
                    record.audio_t0 = pacer.t0
                    continue
                record.lateness.add(await pacer.wait_until(audio_time))
                before, sessions = clock(), stream.sessions
                # ``offer`` returns at once unless it must wait (a full send queue, a
                # reconnect): a callback that ran meanwhile tells a wait from a GC pause.
                yielded: list[bool] = []
                marker = loop.call_soon(yielded.append, True)
                await stream.offer(chunk)
                marker.cancel()
                blocked = clock() - before
                if stream.sessions != sessions and pacer.t0 is not None:
                    # Waited for a reconnect: go on at the pace from here, as ``feed`` does.
                    pacer.t0 += blocked
                    record.reconnect_seconds += blocked
                elif yielded:
                    record.blocked_sends += 1
                    record.blocked_seconds += blocked


# ---- the whole run ------------------------------------------------------------------------------
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

    def failures(self) -> list[dict[str, Any]]:
        counts: Counter[tuple[str, str]] = Counter()
        for r in self.records:
            if not r.failed:
                continue
            if r.error is not None:
                counts[(r.error.kind, r.error.message)] += 1
            else:
                counts[(ev.SERVER, "the session ended without an end of session")] += 1
        return [
            {
                "kind": kind,
                "message": message,
                "count": n,
                "exit_code": int(status_for_error_kind(kind)),
            }
            for (kind, message), n in counts.most_common()
        ]

    def pacing(self) -> LatenessHistogram:
        return self.lateness


async def run_sessions(
    test: LoadTest,
    audio: SharedAudio,
    backends: list[Backend],
    options: SessionOptions,
    interrupts: Interrupts,
    on_progress: Callable[[LoadTest, int], None] | None = None,
    factory: Callable[[], Backend] | None = None,
) -> None:
    """Run every session of ``test`` (ramped, paced, repeated) until all end or an abort."""
    stop = interrupts.graceful
    test.records = [
        SessionRecord(index=i, speed=options.speed, lateness=test.lateness)
        for i in range(len(backends))
    ]
    runners = [
        SessionRunner(r, b, audio, options, test.repeat, stop, factory)
        for r, b in zip(test.records, backends, strict=True)
    ]
    ramp = Pacer(1.0)
    ramp.start()
    started = 0
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
        if connects == len(runners):
            gc.freeze()

    async def start_later(i: int, runner: SessionRunner) -> None:
        nonlocal started
        delay = test.ramp * i / len(runners)
        if delay > 0 and not await _wait_unless(ramp.wait_until(delay), stop):
            return
        started += 1
        runner.on_connect = on_connect
        try:
            await runner.run()
        except asyncio.CancelledError:
            runner.record.aborted = not runner.record.ok and runner.record.error is None
            raise

    loop = asyncio.get_running_loop()
    t_start = loop.time()
    tasks = [asyncio.create_task(start_later(i, r)) for i, r in enumerate(runners)]
    everything: asyncio.Future[list[Any]] = asyncio.gather(*tasks, return_exceptions=True)
    aborter = asyncio.create_task(interrupts.abort.wait())
    ticker = asyncio.create_task(_tick(lambda: on_progress(test, started))) if on_progress else None
    try:
        waiting: set[asyncio.Future[Any]] = {everything, aborter}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for r, t in zip(test.records, tasks, strict=True):
            if not t.cancelled() and t.exception() is not None and r.error is None:
                exc = t.exception()
                r.error = ev.Error(backend=test.backend_name, message=str(exc), kind=ev.SERVER)
    finally:
        aborter.cancel()
        if ticker is not None:
            ticker.cancel()
        gc.unfreeze()
        test.wall_seconds = loop.time() - t_start
        test.interrupted = interrupts.count > 0


async def _wait_unless(waiting: Any, stop: asyncio.Event) -> bool:
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


# ---- summary ------------------------------------------------------------------------------------
def summary(test: LoadTest, max_p95_latency: float | None) -> dict[str, Any]:
    records = test.records
    failures = test.failures()
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
        "first_partial": summarize(_present(r.since_audio(r.first_partial) for r in records)),
        "first_final": summarize(_present(r.since_audio(r.first_final) for r in records)),
        "final_latency": latency,
        "seat_wait": summarize(seat_waits),
        "pacing_lateness": test.pacing().summary(),
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


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def exit_status(result: dict[str, Any]) -> ExitStatus:
    if result["failures"]:
        codes = [ExitStatus(f["exit_code"]) for f in result["failures"]]
        return max(codes, key=lambda s: SEVERITY.index(s) if s in SEVERITY else -1)
    if result["interrupted"]:
        return ExitStatus.INTERRUPTED
    if result["latency_ok"] is False:
        return ExitStatus.SERVER
    return ExitStatus.OK


def error_line(result: dict[str, Any]) -> str | None:
    """The one stderr line that explains a non-zero exit."""
    if result["failures"]:
        first = result["failures"][0]
        more = len(result["failures"]) - 1
        also = f" (and {more} other reason{'s' if more > 1 else ''})" if more else ""
        return (
            f"{result['failed']} of {result['sessions']} sessions failed; "
            f"{first['count']}: {first['message']}{also}"
        )
    if result["interrupted"]:
        return None
    if result["latency_ok"] is False:
        p95 = result["final_latency"]["p95"]
        if p95 is None:
            return (
                "no final with word times arrived, so the final latency could not be checked "
                f"against --max-p95-latency {result['max_p95_latency']:g}"
            )
        return (
            f"p95 final latency {p95:.3f} s exceeds --max-p95-latency "
            f"{result['max_p95_latency']:g} s"
        )
    return None


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def render_table(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    title = (
        f"{result['backend']}: {result['sessions']} sessions, ramp {result['ramp']:g} s, "
        f"repeat {result['repeat']}, speed {result['speed']:g}, "
        f"{result['audio_seconds']:.1f} s of audio each, {result['wall_seconds']:.1f} s wall"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    for name in ("count", "p50", "p95", "max"):
        table.add_column(name, justify="right")
    rows = [
        ("connect", "connect"),
        ("first partial (from audio start)", "first_partial"),
        ("first final (from audio start)", "first_final"),
        ("final latency", "final_latency"),
        ("seat wait", "seat_wait"),
        ("client pacing lateness (frames)", "pacing_lateness"),
    ]
    for label, key in rows:
        s = result[key]
        table.add_row(label, str(s["count"]), _fmt(s["p50"]), _fmt(s["p95"]), _fmt(s["max"]))
    console.print(table)
    status = "green" if not result["failed"] else "red"
    console.print(
        f"sessions: [{status}]{result['ok']} ok, {result['failed']} failed[/{status}]",
        highlight=False,
    )
    for f in result["failures"]:
        console.print(f"  {f['count']} × {f['kind']}: {f['message']}", markup=False)
    bp = result["backpressure"]
    if bp["sends"]:
        console.print(
            f"backpressure: {bp['sends']} sends in {bp['sessions']} sessions waited "
            f"{bp['seconds']:.2f} s in all for the socket (server not reading fast enough)",
            highlight=False,
        )
    if result["max_p95_latency"] is not None:
        verdict = "ok" if result["latency_ok"] else "EXCEEDED"
        console.print(
            f"p95 final latency vs --max-p95-latency {result['max_p95_latency']:g} s: {verdict}",
            highlight=False,
        )


# ---- the command --------------------------------------------------------------------------------
def check_options(common: Common) -> None:
    unsupported = [
        ("--mic", common.mic),
        ("--split-channels", common.split_channels),
        ("--raw", common.raw),
        ("--output", bool(common.outputs)),
        ("--save-audio", common.save_audio is not None),
    ]
    for name, used in unsupported:
        if used:
            raise UsageError(f"{name} cannot be combined with --concurrency (load-test mode)")
    if common.max_p95_latency is not None and common.speed == 0:
        raise UsageError("--max-p95-latency needs paced audio (--speed > 0)")


def session_options(common: Common) -> SessionOptions:
    return SessionOptions(
        speed=common.speed,
        chunk_ms=common.chunk_ms,
        timeout=common.timeout,
        wire=WireOptions(
            connect_timeout=common.connect_timeout,
            heartbeat=common.heartbeat or None,
            ca_file=common.ca_file,
            insecure=common.insecure,
        ),
        debug=common.debug,
        duration=common.duration,
        reconnect=common.reconnect,
    )


def run_load_test(common: Common, backend_name: str, make_backend: BackendFactory) -> int:
    """``--concurrency N``: run N sessions of the input, print the summary, return the exit code."""
    from streamcli.commands.run import open_input, warn_plaintext_credentials

    check_options(common)
    n = common.concurrency
    speaker = common.speakers[0] if common.speakers else None
    backends = [make_backend(speaker) for _ in range(n)]
    warn_plaintext_credentials(b.connect_request() for b in backends[:1])
    first = backends[0]
    if any((b.sample_rate, b.encoding) != (first.sample_rate, first.encoding) for b in backends):
        raise UsageError("--concurrency: the sessions disagree on the audio format")
    options = session_options(common)
    test = LoadTest(
        backend_name=backend_name,
        concurrency=n,
        ramp=common.ramp,
        repeat=common.repeat,
        speed=common.speed,
        chunk_ms=common.chunk_ms,
    )
    source = open_input(common)
    interrupts = Interrupts()
    stderr_tty = sys.stderr.isatty()
    progress = _Progress(n) if stderr_tty and not (common.quiet or common.json) else None
    if common.insecure:
        print("streamcli: warning: --insecure: TLS certificates are not checked", file=sys.stderr)

    async def main() -> None:
        audio = await decode_once(
            source, first.sample_rate, first.encoding, common.chunk_ms, common.duration
        )
        source.close()
        if not audio.chunks:
            raise UsageError(f"{source.label}: no audio to stream")
        test.audio_seconds = audio.seconds
        interrupts.install()
        try:
            await run_sessions(
                test,
                audio,
                backends,
                options,
                interrupts,
                progress.update if progress else None,
                lambda: make_backend(speaker),  # a fresh backend per reconnect
            )
        finally:
            interrupts.uninstall()

    try:
        asyncio.run(main())
    finally:
        source.close()
        if progress is not None:
            progress.close()
    result = summary(test, common.max_p95_latency)
    _print_result(result, common)
    line = error_line(result)
    if line is not None:
        print(f"streamcli: error: {line}", file=sys.stderr, flush=True)
    elif result["interrupted"]:
        print("streamcli: interrupted", file=sys.stderr, flush=True)
    return int(result["exit_code"])


def _print_result(result: dict[str, Any], common: Common) -> None:
    stdout_tty = sys.stdout.isatty()
    if common.json or not stdout_tty:
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(result, ensure_ascii=False), flush=True)
    if common.json:
        return
    if stdout_tty:
        _render(result, common, sys.stdout)
    elif not common.quiet and sys.stderr.isatty():
        _render(result, common, sys.stderr)


def _render(result: dict[str, Any], common: Common, file: Any) -> None:
    from rich.console import Console

    no_color = common.no_color or "NO_COLOR" in os.environ
    render_table(result, Console(file=file, no_color=no_color, highlight=False))


class _Progress:
    """A transient one-line status on a terminal's stderr while the sessions run."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self.total = total
        self.live = Live(
            "",
            console=Console(stderr=True),
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def update(self, test: LoadTest, started: int) -> None:
        done = sum(r.ok for r in test.records)
        failed = sum(r.error is not None for r in test.records)
        late = test.lateness.max
        self.live.update(
            f"load test: {started}/{self.total} started, {started - done - failed} running, "
            f"{done} ok, {failed} failed; max pacing lateness {_fmt(late)}",
            refresh=True,
        )

    def close(self) -> None:
        self.live.stop()
