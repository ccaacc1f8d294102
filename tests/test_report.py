"""The HTML report's own computations (the pages themselves are checked in a browser:
tests/e2e/test_reports.py)."""

from __future__ import annotations

import random

from streamcli.present.report import _rolling_p95


def naive_p95(points, window=5.0):
    out, last = [], None
    for t, _ in points:
        if last is not None and t - last > window:
            out.append((None, None))
        near = sorted(x for s, x in points if t - window < s <= t)
        out.append((t, near[min(len(near) - 1, int(0.95 * len(near)))]))
        last = t
    return out


def test_the_rolling_p95_is_the_p95_of_the_last_window_at_each_final():
    rng = random.Random(7)
    times = [*sorted(rng.uniform(0, 60) for _ in range(400)), 80.0, 80.5]  # a gap: a break
    points = [(t, rng.uniform(0.05, 2.0)) for t in times]
    assert _rolling_p95(points) == naive_p95(points)
    assert (None, None) in _rolling_p95(points)
