"""Real-time pacing on an absolute clock.

Frame k leaves at ``t0 + audio_time(k) / speed``, where ``audio_time(k)`` is the audio already
sent before it. Sleeping "one chunk" after each send would add the loop's own overhead on every
chunk and drift; the absolute schedule never accumulates error. The clock and the sleep are
injected, so tests drive it with a fake clock. This is the only place that sleeps for pacing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(
        self,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self.clock = clock
        self._sleep = sleep
        self.t0: float | None = None

    def start(self, t0: float | None = None) -> None:
        self.t0 = self.clock() if t0 is None else t0

    def due(self, audio_time: float) -> float:
        """The wall-clock time at which audio starting at ``audio_time`` should leave."""
        if self.t0 is None:
            self.start()
        assert self.t0 is not None
        return self.t0 if self.speed == 0 else self.t0 + audio_time / self.speed

    async def wait_until(self, audio_time: float) -> float:
        """Sleep until ``audio_time`` is due; return how late we are (seconds, >= 0)."""
        due = self.due(audio_time)
        if self.speed == 0:
            return 0.0
        now = self.clock()
        if due > now:
            await self._sleep(due - now)
            now = self.clock()
        return max(0.0, now - due)
