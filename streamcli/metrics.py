"""Metrics: events and timestamps in, latencies, pacing lateness and counts out.

One module for every way of running many sessions (the load test, batch runs, Locust users):
a ``SessionRecord`` subscribes to one session's events and notes when things happened (event
loop clock, seconds); ``summarize`` / ``LatenessHistogram`` turn many samples into quantiles;
``failures`` counts what went wrong, by kind. Nothing here does I/O or knows the CLI.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamcli import events as ev
from streamcli.exit import status_for_error_kind

QUANTILES = (("p50", 0.50), ("p95", 0.95))


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


class Lateness(Protocol):
    def add(self, seconds: float) -> None:
        """One frame's pacing lateness (seconds)."""


def rounded(seconds: float | None) -> float | None:
    """Seconds (or a rate) as JSON shows them: microseconds, None kept."""
    return None if seconds is None else round(seconds, 6)


def _r(seconds: float) -> float:
    return round(seconds, 6)


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
    final_times: list[float] = field(default_factory=list)  # when each of those finals came
    waiting_since: float | None = None
    seat_wait: float | None = None
    error: ev.Error | None = None
    error_at: float | None = None
    ended: bool = False
    ended_at: float | None = None  # when the server's end of session came
    lateness: Lateness = field(default_factory=LatenessHistogram)  # may be shared
    blocked_sends: int = 0
    blocked_seconds: float = 0.0
    reconnects: int = 0
    reconnect_seconds: float = 0.0  # audio paused while reconnecting

    def on_event(self, event: ev.Event, now: float) -> None:
        if isinstance(event, ev.Status):
            if event.state == "waiting" and self.waiting_since is None and self.seat_wait is None:
                self.waiting_since = now
            elif event.state == "seated" and self.waiting_since is not None:
                self.seat_wait, self.waiting_since = now - self.waiting_since, None
            return
        if isinstance(event, ev.Partial | ev.Final | ev.End) and self.waiting_since is not None:
            # A stream that ended while still waiting: its first answer ends the wait.
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
            self.ended, self.ended_at = True, now
        elif isinstance(event, ev.Error) and self.error is None:
            self.error, self.error_at = event, now

    def _on_final(self, final: ev.Final, now: float) -> None:
        if final.unconfirmed:
            return  # a tail reported at the end, not a server final
        if self.first_final is None:
            self.first_final = now
        if final.end is not None and self.audio_t0 is not None and self.speed > 0:
            audio_wall = self.audio_t0 + final.end / self.speed + self.paused()
            self.final_latencies.append(now - audio_wall)
            self.final_times.append(now)

    def paused(self) -> float:
        """Seconds the audio stood still: reconnects and the seat wait (a held stream goes on
        at its pace from the seat, so neither counts in the session's own latencies)."""
        return self.reconnect_seconds + (self.seat_wait or 0.0)

    @property
    def ok(self) -> bool:
        return self.error is None and self.ended

    @property
    def failed(self) -> bool:
        return self.started and not self.ok and not self.aborted

    def end_phase(self, audio_seconds: float) -> float | None:
        """From when the last audio was due to the end of session: the server's (and the
        protocol's) own finishing time, whatever the audio waited for before."""
        if self.ended_at is None or self.audio_t0 is None or self.speed <= 0:
            return None
        return self.ended_at - (self.audio_t0 + audio_seconds / self.speed + self.paused())

    def since_audio(self, t: float | None) -> float | None:
        if t is None or self.audio_t0 is None:
            return None
        return t - self.audio_t0 - (self.seat_wait or 0.0)


def failure(record: SessionRecord) -> tuple[str, str]:
    """What ended a failed session: (kind, message)."""
    if record.error is not None:
        return record.error.kind, record.error.message
    return ev.SERVER, "the session ended without an end of session"


def failures(records: Iterable[SessionRecord]) -> list[dict[str, Any]]:
    """What went wrong, most frequent first: one entry per (kind, message)."""
    counts: Counter[tuple[str, str]] = Counter(failure(r) for r in records if r.failed)
    return [
        {
            "kind": kind,
            "message": message,
            "count": n,
            "exit_code": int(status_for_error_kind(kind)),
        }
        for (kind, message), n in counts.most_common()
    ]


def present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]
