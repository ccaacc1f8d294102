"""The pacer keeps an absolute schedule: frame k leaves at t0 + audio_time(k) / speed."""

from __future__ import annotations

import pytest

from streamcli.audio.pacer import Pacer


class FakeClock:
    """A clock whose sleeps take a little longer than asked (like a busy event loop)."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 100.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.overshoot


async def test_pacer_waits_for_each_frame_on_the_absolute_schedule():
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    pacer.start()
    for k in range(5):
        late = await pacer.wait_until(k * 0.1)
        assert late == 0.0
        assert clock.now == pytest.approx(100.0 + k * 0.1)


async def test_pacer_does_not_drift_when_sleeps_overshoot():
    clock = FakeClock(overshoot=0.003)  # every sleep is 3 ms late
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    pacer.start()
    for k in range(1000):
        await pacer.wait_until(k * 0.1)
        clock.now += 0.001  # the send itself takes 1 ms
    # A "send then sleep one chunk" loop would be 4 s late after 1000 chunks; we are 4 ms late.
    assert clock.now - (100.0 + 999 * 0.1) < 0.005


async def test_pacer_scales_with_speed():
    clock = FakeClock()
    pacer = Pacer(4.0, clock=clock, sleep=clock.sleep)
    pacer.start()
    await pacer.wait_until(2.0)
    assert clock.now == pytest.approx(100.5)


async def test_pacer_speed_zero_never_sleeps():
    clock = FakeClock()
    pacer = Pacer(0.0, clock=clock, sleep=clock.sleep)
    pacer.start()
    for k in range(100):
        assert await pacer.wait_until(k * 1.0) == 0.0
    assert clock.sleeps == []


async def test_pacer_reports_lateness_when_behind_schedule():
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock, sleep=clock.sleep)
    pacer.start()
    clock.now += 0.25
    assert await pacer.wait_until(0.1) == pytest.approx(0.15)
    assert clock.sleeps == []
