"""A batch run's presentation: one line per finished file on a terminal, the progress line, the
summary table, the JUnit XML report and the Markdown summary. They all read the same results
(``batch.FileResult``) and summary (``batch.summary_dict``), as pytest's terminal reporter and
``--junitxml`` read the same test reports; none sees the CLI's options."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from streamcli.present import StatusLine
from streamcli.present import fmt_seconds as _fmt
from streamcli.specs import OutputSpec

if TYPE_CHECKING:
    from streamcli.batch import BatchRun, FileResult


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _wer(r: FileResult) -> float | None:
    return None if r.score is None else r.score.wer


def _p95(r: FileResult) -> float | None:
    return r.latency()["p95"]


def result_line(r: FileResult) -> str:
    """A terminal's line for a finished file (stdout, when it is not JSON)."""
    if r.failed:
        return f"✗ {r.input}: {r.error}"
    mark = "!" if r.below else "✓"
    parts = [f"{mark} {r.input}"]
    if r.score is not None:
        parts.append(f"WER {_pct(r.score.wer)}")
    if r.below:
        parts.append("; ".join(r.below))
    return "  ".join(parts) + f"\n    {r.transcript}"


class Progress(StatusLine):
    """Files done / running / failed, audio hours, ETA: one transient line on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()

    @classmethod
    def on_terminal(cls, quiet: bool) -> Progress | None:
        return cls() if cls.wanted(quiet) else None

    def update(self, run: BatchRun) -> None:
        results = run.results
        done = [r for r in results if r.done]
        running = sum(r.started and not r.done for r in results)
        failed = sum(r.failed for r in done)
        hours = sum(r.audio_seconds for r in done) / 3600
        elapsed = time.monotonic() - self.t0
        left = len(results) - len(done)
        eta = f"ETA {_clock(elapsed / len(done) * left)}" if done and left else ""
        self.show(
            f"files: {len(done)}/{len(results)} done, {running} running, {failed} failed; "
            f"{hours:.3f} h of audio; {eta}"
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m}:{s:02d}"


def print_summary(run: BatchRun, summary: dict[str, Any], output: OutputSpec) -> None:
    """The table on stderr when it is a terminal (stdout carries only results), then the one
    stderr line that explains a non-zero exit."""
    if not output.quiet and sys.stderr.isatty():
        _table(run, summary, sys.stderr, output.no_color)
    line = error_line(run, summary)
    if line is not None:
        print(f"streamcli: error: {line}", file=sys.stderr, flush=True)
    elif summary["interrupted"]:
        print("streamcli: interrupted", file=sys.stderr, flush=True)


def error_line(run: BatchRun, summary: dict[str, Any]) -> str | None:
    failed = [r for r in run.results if r.failed and r.error != "interrupted"]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        why = first.error or "failed"
        why = why if why.startswith(first.input) else f"{first.input}: {why}"
        return f"{len(failed)} of {len(run.results)} files failed; {why}{more}"
    below = [r for r in run.results if r.below]
    if below and not summary["interrupted"]:
        first = below[0]
        more = f" (and {len(below) - 1} more)" if len(below) > 1 else ""
        return (
            f"{len(below)} of {len(run.results)} files below the thresholds; "
            f"{first.input}: {'; '.join(first.below)}{more}"
        )
    return None


def _table(run: BatchRun, summary: dict[str, Any], file: Any, no_color: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, no_color=no_color or "NO_COLOR" in os.environ, highlight=False)
    title = (
        f"{run.backend_name}: {summary['files']} files, {summary['audio_seconds']:.1f} s of audio "
        f"in {summary['wall_seconds']:.1f} s wall, --jobs {summary['jobs']}"
    )
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("input", "left"),
        ("status", "left"),
        ("audio", "right"),
        ("WER", "right"),
        ("CER", "right"),
        ("first final", "right"),
        ("p95 latency", "right"),
        ("RTF", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in run.results:
        table.add_row(
            r.input,
            r.verdict,
            f"{r.audio_seconds:.1f} s",
            _pct(_wer(r)),
            _pct(None if r.score is None else r.score.cer),
            _fmt(r.first("first_final")),
            _fmt(_p95(r)),
            "—" if r.rtf is None else f"{r.rtf:.2f}",
        )
    table.add_row(
        "all",
        f"{summary['ok']} ok, {summary['failed']} failed, {summary['below_threshold']} below",
        f"{summary['audio_seconds']:.1f} s",
        _pct(summary["wer"]),
        _pct(summary["cer"]),
        _fmt(summary["first_final"]["p50"]),
        _fmt(summary["final_latency"]["p95"]),
        "—" if summary["rtf"] is None else f"{summary['rtf']:.2f}",
        style="bold",
    )
    console.print(table)


# ---- reports for CI ---------------------------------------------------------------------------
def write_junit(path: str, run: BatchRun, summary: dict[str, Any]) -> None:
    """One ``testcase`` per input: ``failure`` for a missed threshold, ``error`` for a failed
    run, ``skipped`` for one that never started. The JUnit XML most CI systems read."""
    suite_name = f"streamcli.{run.backend_name}"
    failures = sum(bool(r.below) and not r.failed for r in run.results)
    errors = sum(r.failed for r in run.results if r.started)
    skipped = sum(not r.started for r in run.results)
    suites = ET.Element(
        "testsuites",
        name="streamcli",
        tests=str(len(run.results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{summary['wall_seconds'] or 0:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=suite_name,
        tests=str(len(run.results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{summary['wall_seconds'] or 0:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("wer", "cer", "audio_seconds", "jobs", "speed", "max_wer", "max_p95_latency"):
        if summary.get(key) is not None:
            ET.SubElement(props, "property", name=key, value=str(summary[key]))
    for r in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=suite_name,
            name=r.input,
            time=f"{r.wall_seconds or 0:.3f}",
        )
        if not r.started:
            ET.SubElement(case, "skipped", message="not run (interrupted)")
        elif r.failed:
            error = ET.SubElement(
                case, "error", message=r.error or "failed", type=f"exit {int(r.status)}"
            )
            error.text = r.error
        elif r.below:
            failure = ET.SubElement(
                case, "failure", message="; ".join(r.below), type="below-threshold"
            )
            failure.text = _failure_text(r)
        out = ET.SubElement(case, "system-out")
        out.text = _case_out(r)
    ET.indent(suites)
    data = ET.tostring(suites, encoding="unicode", xml_declaration=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(data + "\n")


def _failure_text(r: FileResult) -> str:
    lines = list(r.below)
    if r.score is not None:
        s = r.score
        lines.append(
            f"WER {_pct(s.wer)} (S {s.substitutions}, I {s.insertions}, D {s.deletions} "
            f"of {s.reference_words} words), CER {_pct(s.cer)}"
        )
        worst = s.worst_segment()
        if worst:
            lines.append(f"worst segment: {worst}")
    p95 = _p95(r)
    if p95 is not None:
        lines.append(f"p95 final latency {p95:.3f} s")
    return "\n".join(lines)


def _case_out(r: FileResult) -> str:
    lines = [f"transcript: {r.transcript}"]
    if r.score is not None:
        lines.append(f"WER {_pct(r.score.wer)}, CER {_pct(r.score.cer)}")
    if r.reference_missing:
        lines.append(r.reference_missing)
    return "\n".join(lines)


def write_markdown(path: str, run: BatchRun, summary: dict[str, Any]) -> None:
    """A summary for a CI job's page (e.g. ``$GITHUB_STEP_SUMMARY``): totals, then a table."""
    verdict = {0: "passed", 8: "below the thresholds", 130: "interrupted"}.get(
        summary["exit_code"], "failed"
    )
    lines = [
        f"## streamcli {run.backend_name}: {verdict}",
        "",
        f"{summary['files']} files: {summary['ok']} ok, {summary['failed']} failed, "
        f"{summary['below_threshold']} below the thresholds. "
        f"Overall WER {_pct(summary['wer'])} over {summary['reference_words']} reference words, "
        f"CER {_pct(summary['cer'])}; p95 final latency {_fmt(summary['final_latency']['p95'])}; "
        f"{summary['audio_seconds']:.1f} s of audio in {summary['wall_seconds']:.1f} s.",
        "",
        "| input | status | WER | CER | first final | p95 latency | RTF | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.results:
        note = r.error or "; ".join(r.below) or (r.reference_missing or "")
        lines.append(
            f"| {_md(r.input)} | {r.verdict} | {_pct(_wer(r))} | "
            f"{_pct(None if r.score is None else r.score.cer)} | {_fmt(r.first('first_final'))} | "
            f"{_fmt(_p95(r))} | {'—' if r.rtf is None else f'{r.rtf:.2f}'} | {_md(note)} |"
        )
    with open(path, "a" if path == os.environ.get("GITHUB_STEP_SUMMARY") else "w") as f:
        f.write("\n".join(lines) + "\n")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
