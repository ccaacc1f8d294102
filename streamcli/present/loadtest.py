"""The load test's presentation: the summary table, the JSON line, the progress line, the one
stderr line that explains the exit code. It reads the summary (``loadtest.summary``), never the
CLI's options."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from streamcli.present import StatusLine
from streamcli.present import fmt_seconds as _fmt
from streamcli.specs import OutputSpec

if TYPE_CHECKING:
    from streamcli.loadtest import LoadTest


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


def print_result(result: dict[str, Any], output: OutputSpec) -> None:
    """JSON on stdout (``--json`` or not a terminal), the table on a terminal, then the one
    stderr line that explains a non-zero exit."""
    stdout_tty = sys.stdout.isatty()
    if output.json or not stdout_tty:
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(result, ensure_ascii=False), flush=True)
    if output.json:
        pass
    elif stdout_tty:
        _render(result, output, sys.stdout)
    elif not output.quiet and sys.stderr.isatty():
        _render(result, output, sys.stderr)
    line = error_line(result)
    if line is not None:
        print(f"streamcli: error: {line}", file=sys.stderr, flush=True)
    elif result["interrupted"]:
        print("streamcli: interrupted", file=sys.stderr, flush=True)


def _render(result: dict[str, Any], output: OutputSpec, file: Any) -> None:
    from rich.console import Console

    no_color = output.no_color or "NO_COLOR" in os.environ
    render_table(result, Console(file=file, no_color=no_color, highlight=False))


class Progress(StatusLine):
    """Started / running / ok / failed and the worst pacing lateness while the sessions run."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    @classmethod
    def on_terminal(cls, total: int, quiet: bool) -> Progress | None:
        """A progress line when stderr is a terminal and nobody asked for quiet."""
        return cls(total) if cls.wanted(quiet) else None

    def update(self, test: LoadTest, started: int) -> None:
        done = sum(r.ok for r in test.records)
        failed = sum(r.error is not None for r in test.records)
        self.show(
            f"load test: {started}/{self.total} started, {started - done - failed} running, "
            f"{done} ok, {failed} failed; max pacing lateness {_fmt(test.lateness.max)}"
        )
