"""Batch runs: many inputs in one run, each its own session, scored and timed, for CI.

Theory of operation. Every input (a file, or each audio file of a directory) becomes a
``FileJob``: it opens the file, builds its sessions (one, or one per channel) and runs them as
an ``engine.run.FeedJob`` (real time, or faster with ``--speed``). ``engine.run.run_sessions``
runs at most ``--jobs`` of them at once. A file that cannot be opened or whose session fails is
one failed file; the others go on. Each session's events go to a ``metrics.SessionRecord``
(latencies from the audio clock of the file's pacer), to stdout as JSON Lines carrying
``input``, and to the file's ``-o`` outputs (a template: ``out/{stem}.srt``). When a file ends,
its finals are scored against its reference (``accuracy.score``: jiwer), and a ``result`` line
goes out; at the end a ``summary`` line, a table (stderr on a terminal), and on request a JUnit
XML report and a Markdown summary (``present.batch``).

Exit status: the worst failed file's code (2 for a file that cannot be read); else 8
(``ExitStatus.QUALITY``) when a file missed ``--max-wer`` or ``--max-p95-latency``; else 0;
130 when interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamcli import events as ev
from streamcli import metrics
from streamcli.accuracy import Score, require_jiwer, score, weighted_cer, weighted_wer
from streamcli.audio.media import MEDIA_SUFFIXES
from streamcli.backends.base import Backend
from streamcli.engine.interrupts import Interrupts
from streamcli.engine.run import FeedJob, RunReport, Schedule, run_sessions
from streamcli.engine.session import Session, SessionOptions
from streamcli.exit import ExitStatus, OutputError, StreamcliError, UsageError, worst_status
from streamcli.metrics import LatenessHistogram, SessionRecord, rounded
from streamcli.sinks.stream import Fanout, JsonLinesSink, LineWriter, Sink
from streamcli.specs import BatchSpec, InputSpec, OutputSpec

BackendFactory = Callable[[str | None], Backend]
AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
    }
    | MEDIA_SUFFIXES  # through FFmpeg (the media extra)
)


# ---- inputs, references, output names -----------------------------------------------------------
def expand_inputs(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for its audio files (by suffix), sorted by name."""
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            found = sorted(
                str(f)
                for f in Path(p).iterdir()
                if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
            if not found:
                raise UsageError(f"{p}: is a directory with no audio files in it")
            out += found
        else:
            out.append(p)
    if len(set(out)) != len(out):
        raise UsageError("an input is given twice")
    return out


def stem(path: str) -> str:
    return "stdin" if path == "-" else Path(path).stem


def output_names(templates: tuple[str, ...], inputs: list[str]) -> list[list[str]]:
    """Each input's output paths: ``{stem}`` (name without suffix), ``{name}``, ``{index}``
    (1-based) and ``{parent}`` (its directory's name) are filled in."""
    if len(inputs) > 1:
        for t in templates:
            if "{stem}" not in t and "{name}" not in t and "{index}" not in t:
                raise UsageError(
                    f"-o {t}: with several inputs, give a template such as out/{{stem}}.srt"
                )
    names = []
    for i, path in enumerate(inputs, 1):
        fields = {
            "stem": stem(path),
            "name": Path(path).name,
            "index": i,
            "parent": Path(path).resolve().parent.name if path != "-" else "",
        }
        try:
            names.append([t.format(**fields) for t in templates])
        except (KeyError, IndexError, ValueError) as e:
            raise UsageError(
                f"-o: bad template ({e}); use {{stem}}, {{name}}, {{index}} or {{parent}}"
            ) from None
    flat = [n for row in names for n in row]
    if len(set(flat)) != len(flat):
        raise UsageError("-o: two inputs would write the same output file (use {stem} or {index})")
    return names


def reference_for(path: str, spec: BatchSpec) -> tuple[str | None, str | None]:
    """(the reference text, None) or (None, why it is missing) or (None, None) when unscored."""
    if spec.reference is not None:
        where = spec.reference
    elif spec.reference_dir is not None:
        where = str(Path(spec.reference_dir) / f"{stem(path)}.txt")
    else:
        return None, None
    try:
        return Path(where).read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return None, f"no reference: {where} does not exist"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"reference {where}: cannot read it ({e})"


# ---- one file ---------------------------------------------------------------------------------
@dataclass
class FileResult:
    input: str
    index: int
    status: ExitStatus = ExitStatus.OK
    error: str | None = None  # why it failed (one line)
    started: bool = False
    audio_seconds: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    records: list[SessionRecord] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the finals' texts, in order
    reference_missing: str | None = None
    score: Score | None = None
    below: list[str] = field(default_factory=list)  # the thresholds it missed

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    @property
    def failed(self) -> bool:
        return self.status != ExitStatus.OK

    @property
    def transcript(self) -> str:
        return " ".join(t for t in self.texts if t.strip())

    @property
    def wall_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def latencies(self) -> list[float]:
        return [x for r in self.records for x in r.final_latencies]

    def latency(self) -> dict[str, Any]:
        """Final latency of this file: ``{count, p50, p95, max}``."""
        return metrics.summarize(self.latencies())

    def seat_wait(self) -> float | None:
        """The longest wait for a server seat (Melvin) of this file's sessions, if any."""
        values = metrics.present(r.seat_wait for r in self.records)
        return max(values) if values else None

    def first(self, what: str) -> float | None:
        values = metrics.present(r.since_audio(getattr(r, what)) for r in self.records)
        return min(values) if values else None

    @property
    def rtf(self) -> float | None:
        """Real-time factor: processing wall time over audio time (below 1: faster)."""
        wall = self.wall_seconds
        return wall / self.audio_seconds if wall is not None and self.audio_seconds else None

    @property
    def verdict(self) -> str:
        if self.status == ExitStatus.INTERRUPTED:
            return "interrupted"
        if self.failed:
            return "failed"
        if self.below:
            return "below-threshold"
        return "ok" if self.done else "not-run"


class FileJob:
    """One input of a batch: open it, run its sessions (a ``FeedJob``), score it."""

    def __init__(self, run: BatchRun, result: FileResult, outputs: list[str]) -> None:
        self.run_ = run
        self.result = result
        self.output_paths = outputs
        self.feed: FeedJob | None = None

    async def run(self, stop: asyncio.Event) -> None:
        b, r = self.run_, self.result
        loop = asyncio.get_running_loop()
        r.started, r.started_at = True, loop.time()
        b.progress_changed()
        outputs = Fanout([], on_failure=b.output_failed)
        source = None
        try:
            from streamcli.audio.sources import open_source

            # Reads a header: quick (stdin is not in batches).
            source = open_source(r.input, audio_stream=b.input_spec.audio_stream)
            names = b.input_spec.speaker_names(source.channels)
            outputs.sinks = self._outputs()
            sessions = [self._session(name, i, outputs) for i, name in enumerate(names)]
            self.feed = FeedJob(source, sessions, b.options)
            await self.feed.run(stop)
            r.audio_seconds = max((s.backend.audio_seconds_sent for s in sessions), default=0.0)
            status = self.feed.status()
            if status != ExitStatus.OK:
                first = self.feed.errors[0]
                self._fail(first.message, status)
            elif stop.is_set():  # Ctrl-C: its audio was cut short, so it is not scored
                self._fail("interrupted", ExitStatus.INTERRUPTED)
        except StreamcliError as e:
            self._fail(e.message, e.status)
        finally:
            if source is not None:
                source.close()
            outputs.close()
            r.ended_at = loop.time()
            self.feed = None  # its sessions, backends and buffers: nothing outlives the file
            b.finished(r)

    def abort(self) -> None:
        if self.feed is not None:
            self.feed.abort()

    def _fail(self, message: str, status: ExitStatus) -> None:
        r = self.result
        if r.error is None:
            r.error, r.status = message, status

    def _outputs(self) -> list[Sink]:
        """This file's sinks: its JSON lines on stdout (with ``input``), its ``-o`` files."""
        from streamcli.sinks.files import open_output

        b = self.run_
        sinks: list[Sink] = []
        if b.json:
            sinks.append(JsonLinesSink(b.writer, extra={"input": self.result.input}))
        for path in self.output_paths:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            sinks.append(open_output(path, b.output.format))
        return sinks

    def _session(self, speaker: str | None, channel: int, outputs: Fanout) -> Session:
        b, r = self.run_, self.result
        record = SessionRecord(index=channel, speed=b.options.speed, lateness=b.lateness)
        r.records.append(record)

        def handle(event: ev.Event) -> None:
            loop = asyncio.get_running_loop()
            if record.audio_t0 is None and self.feed is not None and self.feed.pacer is not None:
                record.audio_t0 = self.feed.pacer.t0
            record.on_event(event, loop.time())
            if isinstance(event, ev.Final):
                r.texts.append(event.text)
            outputs.handle(event)

        def make() -> Backend:
            return b.make_backend(speaker)  # a fresh backend per reconnect

        return Session(
            make(),
            handle,
            b.options,
            channel=channel if b.input_spec.split_channels else None,
            factory=make,
        )


# ---- the run ----------------------------------------------------------------------------------
class BatchRun:
    def __init__(
        self,
        inputs: list[str],
        backend_name: str,
        make_backend: BackendFactory,
        options: SessionOptions,
        spec: BatchSpec,
        output: OutputSpec,
        input_spec: InputSpec,
    ) -> None:
        self.backend_name = backend_name
        self.make_backend = make_backend
        self.options = options
        self.spec = spec
        self.output = output
        self.input_spec = input_spec  # channels and speaker names (its path is unused)
        self.results = [FileResult(path, i) for i, path in enumerate(inputs, 1)]
        self.lateness = LatenessHistogram()  # shared: memory stays flat in the number of files
        self.interrupts = Interrupts()
        self.json = output.json or not sys.stdout.isatty()
        self.writer = LineWriter(sys.stdout, self.interrupts.trigger_abort)
        self.output_failures: list[str] = []
        self.progress: Any = None
        self.wall_seconds = 0.0
        self.interrupted = False

    # ---- what goes out while it runs
    def _line(self, obj: dict[str, Any]) -> None:
        try:
            self.writer.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        except OutputError as e:
            self.output_failed(e)

    def output_failed(self, error: StreamcliError) -> None:
        if error.message in self.output_failures:
            return
        self.output_failures.append(error.message)
        print(f"streamcli: error: {error.message}", file=sys.stderr, flush=True)

    def progress_changed(self) -> None:
        if self.progress is not None:
            self.progress.update(self)

    def finished(self, r: FileResult) -> None:
        """A file ended: score it, check the thresholds, say so."""
        from streamcli.present.batch import result_line

        if not r.failed and r.error is None:
            reference, missing = reference_for(r.input, self.spec)
            r.reference_missing = missing
            if reference is not None:
                r.score = score(reference, r.transcript, normalize=self.spec.normalize)
            self._check(r)
        if self.json:
            self._line(result_dict(r, self))
        elif not self.output.quiet:
            if self.progress is not None and sys.stdout.isatty():
                self.progress.print(result_line(r))  # above the progress line, not through it
            else:
                print(result_line(r), flush=True)
        self.progress_changed()

    def _check(self, r: FileResult) -> None:
        s = self.spec
        if s.max_wer is not None:
            if r.score is None or r.score.wer is None:
                r.below.append(r.reference_missing or "no WER to compare with --max-wer")
            elif r.score.wer > s.max_wer:
                r.below.append(f"WER {r.score.wer:.1%} > --max-wer {s.max_wer:.1%}")
        if s.max_p95_latency is not None:
            p95 = r.latency()["p95"]
            if p95 is None:
                r.below.append("no final latency measured for --max-p95-latency")
            elif p95 > s.max_p95_latency:
                r.below.append(
                    f"p95 final latency {p95:.3f} s > --max-p95-latency {s.max_p95_latency:g} s"
                )

    # ---- the whole run
    async def run(self, names: list[list[str]]) -> RunReport:
        """Run every file; ``names``: each file's output paths (``output_names``)."""
        from streamcli.present.batch import Progress

        jobs = [FileJob(self, r, n) for r, n in zip(self.results, names, strict=True)]
        self.progress = Progress.on_terminal(quiet=self.output.quiet)
        try:
            report = await run_sessions(jobs, Schedule(jobs=self.spec.jobs), self.interrupts)
        finally:
            if self.progress is not None:
                self.progress.close()
        for r, state in zip(self.results, report.states, strict=True):
            if state.error is not None and r.error is None:
                r.error, r.status = str(state.error), ExitStatus.ERROR
            if state.aborted and r.error is None:
                r.error, r.status = "interrupted", ExitStatus.INTERRUPTED
        self.wall_seconds = report.wall_seconds
        self.interrupted = report.interrupted
        return report

    def exit_status(self) -> ExitStatus:
        failed = [r.status for r in self.results if r.failed and r.status != ExitStatus.INTERRUPTED]
        if failed:
            return worst_status(failed)
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if any(r.below for r in self.results):
            return ExitStatus.QUALITY
        if self.output_failures:
            return ExitStatus.OUTPUT
        return ExitStatus.OK


def result_dict(r: FileResult, run: BatchRun) -> dict[str, Any]:
    latency = r.latency()
    return {
        "type": "result",
        "backend": run.backend_name,
        "input": r.input,
        "status": r.verdict,
        "exit_code": int(ExitStatus.QUALITY if r.below and not r.failed else r.status),
        "error": r.error,
        "audio_seconds": round(r.audio_seconds, 3),
        "wall_seconds": rounded(r.wall_seconds),
        "rtf": rounded(r.rtf),
        "first_partial": rounded(r.first("first_partial")),
        "first_final": rounded(r.first("first_final")),
        "final_latency": latency,
        "seat_wait": rounded(r.seat_wait()),
        "transcript": r.transcript,
        "reference_missing": r.reference_missing,
        "accuracy": r.score.to_dict() if r.score is not None else None,
        "below_threshold": r.below,
    }


def summary_dict(run: BatchRun) -> dict[str, Any]:
    results = run.results
    scores = [r.score for r in results if r.score is not None]
    audio = sum(r.audio_seconds for r in results)
    wall = run.wall_seconds
    return {
        "type": "summary",
        "backend": run.backend_name,
        "files": len(results),
        "ok": sum(r.verdict == "ok" for r in results),
        "failed": sum(r.verdict == "failed" for r in results),
        "interrupted_files": sum(r.verdict == "interrupted" for r in results),
        "below_threshold": sum(bool(r.below) and not r.failed for r in results),
        "not_run": sum(not r.started for r in results),
        "jobs": run.spec.jobs,
        "speed": run.options.speed,
        "audio_seconds": round(audio, 3),
        "wall_seconds": rounded(wall),
        "rtf": rounded(wall / audio) if audio else None,
        "wer": rounded(weighted_wer(scores)),
        "cer": rounded(weighted_cer(scores)),
        "scored_files": len(scores),
        "reference_words": sum(s.reference_words for s in scores),
        "first_partial": metrics.summarize(
            metrics.present(r.first("first_partial") for r in results)
        ),
        "first_final": metrics.summarize(metrics.present(r.first("first_final") for r in results)),
        "final_latency": metrics.summarize(x for r in results for x in r.latencies()),
        "seat_wait": metrics.summarize(metrics.present(r.seat_wait() for r in results)),
        "max_wer": run.spec.max_wer,
        "max_p95_latency": run.spec.max_p95_latency,
        "interrupted": run.interrupted,
        "exit_code": int(run.exit_status()),
    }


def run_batch(
    inputs: list[str],
    backend_name: str,
    make_backend: BackendFactory,
    options: SessionOptions,
    spec: BatchSpec,
    output: OutputSpec,
    input_spec: InputSpec | None = None,
) -> int:
    """Run every input (at most ``spec.jobs`` at once); print results; return the exit code."""
    from streamcli.present.batch import print_summary, write_junit, write_markdown

    if spec.reference is not None or spec.reference_dir is not None:
        require_jiwer()
    if spec.report is not None:
        from streamcli.present.report import require_report

        require_report()
    files = expand_inputs(inputs)
    if files.count("-") and len(files) > 1:
        raise UsageError("stdin ('-') cannot be one of several inputs")
    run = BatchRun(
        files, backend_name, make_backend, options, spec, output, input_spec or InputSpec()
    )
    names = output_names(output.files, files)  # a bad template fails before anything runs
    asyncio.run(run.run(names))
    summary = summary_dict(run)
    if run.json:
        run._line(summary)
    print_summary(run, summary, output)
    for path, write in ((spec.junit, write_junit), (spec.summary_md, write_markdown)):
        if path is not None:
            try:
                write(path, run, summary)
            except OSError as e:
                run.output_failed(OutputError(f"{path}: cannot write it ({e.strerror or e})"))
    if spec.report is not None:
        from streamcli.present import report

        try:
            report.write(spec.report, report.batch_html(run, summary))
        except OutputError as e:
            run.output_failed(e)
    status = run.exit_status()
    return int(status)
