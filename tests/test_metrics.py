"""The metrics module: quantiles and the pacing-lateness histogram, without sockets."""

from __future__ import annotations

import pytest

from streamcli import metrics


def test_lateness_histogram_reports_conservative_quantiles_and_the_exact_max():
    h = metrics.LatenessHistogram()
    for ms in [0.05, 0.2, 0.2, 0.3, 4.0]:
        h.add(ms / 1000)
    h.add(2.5)
    s = h.summary()
    assert s["count"] == 6
    assert s["p50"] == pytest.approx(0.0003)  # upper edge of the 0.2 ms bin
    assert s["p95"] == 2.5 and s["max"] == 2.5


def test_summarize_uses_nearest_rank_quantiles():
    stats = metrics.summarize([3.0, 1.0, 2.0, 4.0])
    assert stats == {"count": 4, "p50": 2.0, "p95": 4.0, "max": 4.0}
    assert metrics.summarize([]) == {"count": 0, "p50": None, "p95": None, "max": None}
