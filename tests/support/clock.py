"""An injectable clock for the engine (``Engine(clock=FakeClock())``): sleeping advances time at
once and adds up how long was slept, so tests of waits never wait on the wall clock."""
from __future__ import annotations

import time

import anyio


class FakeClock:
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
