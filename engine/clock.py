"""Time, as the engine and triggers see it: one clock, injectable in tests.

``Clock`` is the wall clock. A test hands the engine (``Engine(clock=...)``) or a trigger host
one whose sleeps advance ``now`` at once, so no test waits on the wall clock.
"""
from __future__ import annotations

import time

import anyio


class Clock:
    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: float) -> None:
        await self.sleep(when - self.now())


class VirtualClock(Clock):
    """A clock whose sleeps move ``now`` on at once (``flowrun test`` and ``flowrun plan``: a Wait or
    a job's polling interval takes no wall time). ``slept`` adds up how long was slept."""

    def __init__(self, start: float | None = None):
        self.t = time.time() if start is None else start
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.t += seconds
        self.slept += seconds
        await anyio.lowlevel.checkpoint()
