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
