"""HTML reports of batch runs and load tests (``--report FILE.html``): one self-contained file,
plotly.js inlined, no network fetch, readable offline and attachable as a CI artifact.

Presentation only: it takes what the tables, the JSON summary and the JUnit writer take (a
``BatchRun`` and its summary; a ``LoadTest`` and its result) and draws them with Plotly
(``pip install 'streamcli[report]'``), imported only here. Every figure shown in the summary
table carries ``data-key`` (its key in the JSON summary), so a test can check the page
against the run's own numbers.
"""

from __future__ import annotations

import bisect
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcli.exit import OutputError, UsageError

if TYPE_CHECKING:
    from streamcli.batch import BatchRun
    from streamcli.loadtest import LoadTest

INSTALL_HINT = "pip install 'streamcli[report]'"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2330; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
td, th { padding: .25rem .8rem; border-bottom: 1px solid #e3e6ec; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b42318; font-weight: 600; } .ok { color: #067647; font-weight: 600; }
.chart { min-height: 340px; } code { font-size: .9em; }
.seg { font-family: ui-monospace, monospace; font-size: .85em; white-space: pre-wrap; }
"""


def require_report() -> None:
    """Before the run, not after it: the report needs Plotly."""
    _plotly()


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise UsageError(f"--report needs Plotly: {INSTALL_HINT}") from None
    return go


def write(path: str, page: str) -> None:
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"--report {path}: {e.strerror or e}") from None


# ---- the page -----------------------------------------------------------------------------------
def _page(title: str, subtitle: str, sections: list[str]) -> str:
    from plotly.offline import get_plotlyjs

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>"
        + "".join(sections)
        + "</body></html>\n"
    )


def _chart(figure: Any, name: str) -> str:
    figure.update_layout(
        template="plotly_white", height=340, margin={"l": 60, "r": 20, "t": 40, "b": 60}
    )
    body = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{name}",
        config={"displaylogo": False, "responsive": True},
    )
    return f"<div class='chart' data-chart='{name}'>{body}</div>"


def _figures(rows: list[tuple[str, str, Any]]) -> str:
    """The summary table: label, JSON key (dotted), value."""
    cells = []
    for label, key, value in rows:
        shown = "—" if value is None else _fmt(value)
        data = html.escape(json.dumps(value))
        cells.append(
            f"<tr><th>{html.escape(label)}</th>"
            f"<td class='n' data-key='{key}' data-value='{data}'>{shown}</td></tr>"
        )
    return "<table class='figures'>" + "".join(cells) + "</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return html.escape(str(value))


# ---- batch runs ---------------------------------------------------------------------------------
def batch_html(run: BatchRun, summary: dict[str, Any]) -> str:
    go = _plotly()
    results = run.results
    names = [Path(r.input).name for r in results]
    sections = [
        "<h2>Summary</h2>",
        _figures(
            [
                ("files", "files", summary["files"]),
                ("ok", "ok", summary["ok"]),
                ("failed", "failed", summary["failed"]),
                ("below threshold", "below_threshold", summary["below_threshold"]),
                ("WER (weighted)", "wer", summary["wer"]),
                ("CER (weighted)", "cer", summary["cer"]),
                ("audio seconds", "audio_seconds", summary["audio_seconds"]),
                ("real-time factor", "rtf", summary["rtf"]),
                ("final latency p50 (s)", "final_latency.p50", summary["final_latency"]["p50"]),
                ("final latency p95 (s)", "final_latency.p95", summary["final_latency"]["p95"]),
                ("max WER", "max_wer", summary["max_wer"]),
                ("max p95 latency (s)", "max_p95_latency", summary["max_p95_latency"]),
                ("exit code", "exit_code", summary["exit_code"]),
            ]
        ),
    ]
    scored = [(Path(r.input).name, r.score) for r in results if r.score is not None]
    if scored:
        accuracy = go.Figure()
        accuracy.add_bar(name="WER", x=[n for n, _ in scored], y=[s.wer for _, s in scored])
        accuracy.add_bar(name="CER", x=[n for n, _ in scored], y=[s.cer for _, s in scored])
        if run.spec.max_wer is not None:
            accuracy.add_hline(
                y=run.spec.max_wer, line_dash="dash", line_color="#b42318",
                annotation_text=f"max WER {run.spec.max_wer:g}",
            )  # fmt: skip
        accuracy.update_layout(title="Error rate per file", yaxis_tickformat=".0%")
        sections += ["<h2>Accuracy</h2>", _chart(accuracy, "accuracy"), _worst(scored)]
    timing = go.Figure()
    for label, values in (
        ("first partial", [r.first("first_partial") for r in results]),
        ("first final", [r.first("first_final") for r in results]),
        ("final latency p95", [r.latency()["p95"] for r in results]),
    ):
        timing.add_bar(name=label, x=names, y=values)
    timing.update_layout(title="Seconds from the audio, per file", yaxis_title="seconds")
    sections += ["<h2>Latency</h2>", _chart(timing, "timing")]
    latencies = [x for r in results for x in r.latencies()]
    if latencies:
        spread = go.Figure(go.Histogram(x=latencies, nbinsx=30, name="finals"))
        spread.update_layout(
            title=f"Final latency of {len(latencies)} finals", xaxis_title="seconds"
        )
        sections.append(_chart(spread, "latency"))
    sections.append(_files_table(run))
    return _page(f"streamcli batch run: {run.backend_name}", _when(), sections)


def _worst(scored: list[tuple[str, Any]]) -> str:
    rows = sorted(scored, key=lambda item: -(item[1].wer or 0.0))[:10]
    cells = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='n'>{_pct(score.wer)}</td>"
        f"<td class='seg'>{html.escape(score.worst_segment() or '')}</td></tr>"
        for name, score in rows
    )
    return (
        "<h3>Worst segments</h3><table><tr><th>file</th><th>WER</th>"
        f"<th>reference / hypothesis</th></tr>{cells}</table>"
    )


def _files_table(run: BatchRun) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(Path(r.input).name)}</td>"
        f"<td class='{'ok' if r.verdict == 'ok' else 'bad'}'>{r.verdict}</td>"
        f"<td class='n'>{_pct(r.score.wer) if r.score else '—'}</td>"
        f"<td class='n'>{_sec(r.first('first_final'))}</td>"
        f"<td class='n'>{_sec(r.latency()['p95'])}</td>"
        f"<td>{html.escape(r.error or '')}</td></tr>"
        for r in run.results
    )
    return (
        "<h2>Files</h2><table class='files'><tr><th>file</th><th>status</th><th>WER</th>"
        f"<th>first final</th><th>p95 latency</th><th>error</th></tr>{cells}</table>"
    )


# ---- load tests ---------------------------------------------------------------------------------
def load_html(test: LoadTest, result: dict[str, Any]) -> str:
    go = _plotly()
    records = [r for r in test.records if r.started]
    t0 = min((r.connect_started for r in records if r.connect_started is not None), default=0.0)
    sections = [
        "<h2>Summary</h2>",
        _figures(
            [
                ("sessions", "sessions", result["sessions"]),
                ("ok", "ok", result["ok"]),
                ("failed", "failed", result["failed"]),
                ("audio seconds each", "audio_seconds", result["audio_seconds"]),
                ("final latency p50 (s)", "final_latency.p50", result["final_latency"]["p50"]),
                ("final latency p95 (s)", "final_latency.p95", result["final_latency"]["p95"]),
                ("seat waits", "seat_wait.count", result["seat_wait"]["count"]),
                (
                    "pacing lateness p95 (s)",
                    "pacing_lateness.p95",
                    result["pacing_lateness"]["p95"],
                ),
                ("exit code", "exit_code", result["exit_code"]),
            ]
        ),
    ]
    sections += ["<h2>Sessions over time</h2>", _chart(_over_time(go, records, t0), "sessions")]
    points = [
        (t - t0, x) for r in records for t, x in zip(r.final_times, r.final_latencies, strict=True)
    ]
    latency = go.Figure()
    if points:
        points.sort()
        latency.add_scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="markers",
            name="final latency", marker={"size": 5, "opacity": 0.5},
        )  # fmt: skip
        window = _rolling_p95(points)
        latency.add_scatter(x=[w[0] for w in window], y=[w[1] for w in window], name="p95")
    latency.update_layout(title="Final latency over time", xaxis_title="seconds into the test")
    sections += ["<h2>Latency</h2>", _chart(latency, "latency")]
    lateness = _lateness(test)
    pacing = go.Figure(go.Bar(x=[b[0] for b in lateness], y=[b[1] for b in lateness]))
    pacing.update_layout(
        title="Pacing lateness of every frame", xaxis_title="ms late", yaxis_type="log"
    )
    sections.append(_chart(pacing, "pacing"))
    waits = [r.seat_wait for r in records if r.seat_wait is not None]
    if waits:
        seats = go.Figure(go.Histogram(x=waits, nbinsx=20))
        seats.update_layout(title=f"Seat waits ({len(waits)} sessions)", xaxis_title="seconds")
        sections.append(_chart(seats, "seats"))
    kinds: dict[str, int] = {}
    for failure in result.get("failures") or []:
        kinds[failure["kind"]] = kinds.get(failure["kind"], 0) + failure["count"]
    sections.append("<h2>Failures</h2>")
    if kinds:
        failures = go.Figure(go.Bar(x=list(kinds), y=list(kinds.values())))
        failures.update_layout(title="Failed sessions by kind", yaxis_title="sessions")
        sections.append(_chart(failures, "failures"))
        sections.append(_failures_table(result["failures"]))
    else:
        sections.append("<p class='ok'>No session failed.</p>")
    subtitle = f"{test.concurrency} sessions, {test.backend_name}, speed {test.speed:g}; {_when()}"
    return _page(f"streamcli load test: {test.backend_name}", subtitle, sections)


def _failures_table(failures: list[dict[str, Any]]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(f['kind'])}</td><td class='n'>{f['count']}</td>"
        f"<td class='n'>{f['exit_code']}</td><td>{html.escape(f['message'])}</td></tr>"
        for f in failures
    )
    return (
        "<table class='failures'><tr><th>kind</th><th>sessions</th><th>exit code</th>"
        f"<th>message</th></tr>{cells}</table>"
    )


def _over_time(go: Any, records: list[Any], t0: float) -> Any:
    """Running, ended and failed sessions, stepped at each start and end."""
    marks: list[tuple[float, str]] = []
    for r in records:
        if r.connect_started is not None:
            marks.append((r.connect_started - t0, "start"))
        end = r.error_at if r.error is not None else r.ended_at
        if end is not None:
            marks.append((end - t0, "failed" if r.error is not None else "ended"))
    marks.sort()
    times, running, ended, failed = [0.0], [0], [0], [0]
    for t, what in marks:
        times.append(t)
        running.append(running[-1] + (1 if what == "start" else -1))
        ended.append(ended[-1] + (what == "ended"))
        failed.append(failed[-1] + (what == "failed"))
    figure = go.Figure()
    for name, values in (("running", running), ("ended", ended), ("failed", failed)):
        figure.add_scatter(x=times, y=values, name=name, line_shape="hv")
    figure.update_layout(title="Sessions", xaxis_title="seconds into the test")
    return figure


def _rolling_p95(
    points: list[tuple[float, float]], window: float = 5.0
) -> list[tuple[float | None, float | None]]:
    """The p95 of the finals of the last ``window`` seconds, at each final (``points`` sorted
    by time); the line breaks where no final came for a whole window. One pass: the window's
    values are kept sorted as it slides (an hour of 200 sessions is 100,000 finals)."""
    out: list[tuple[float | None, float | None]] = []
    inside: list[float] = []  # the window's latencies, sorted
    first = 0  # the oldest point still in the window
    last: float | None = None
    for t, x in points:
        while points[first][0] <= t - window:
            inside.pop(bisect.bisect_left(inside, points[first][1]))
            first += 1
        bisect.insort(inside, x)
        if last is not None and t - last > window:
            out.append((None, None))
        out.append((t, inside[min(len(inside) - 1, int(0.95 * len(inside)))]))
        last = t
    return out


def _lateness(test: LoadTest) -> list[tuple[float, int]]:
    """(upper edge in ms, frames) of the non-empty bins, merged to 1 ms below a second."""
    hist = test.lateness
    merged: dict[float, int] = {}
    for i, n in enumerate(hist.bins):
        if not n:
            continue
        edge = (i // 10 + 1) if i < hist.FINE_BINS else (i - hist.FINE_BINS + 1) * 1000
        merged[float(edge)] = merged.get(float(edge), 0) + n
    return sorted(merged.items())


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _sec(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _when() -> str:
    from datetime import datetime

    return f"made {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
