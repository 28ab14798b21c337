"""An injectable clock for the engine (``Engine(clock=FakeClock())``): sleeping advances time at
once and adds up how long was slept, so tests of waits never wait on the wall clock."""
from __future__ import annotations

import time

import anyio


class FakeClock:
    """``auto=False``: ``sleep`` blocks until the test moves time on with ``advance``."""

    def __init__(self, start: float | None = None, *, auto: bool = True):
        self.t = time.time() if start is None else start
        self.slept = 0.0
        self.auto = auto
        self._moved = anyio.Event() if not auto else None

    def advance(self, seconds: float) -> None:
        self.t += seconds
        if self._moved is not None:
            self._moved.set()
            self._moved = anyio.Event()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if not self.auto:
            target = self.t + seconds
            while self.t < target:
                await self._moved.wait()
            return
        self.t += seconds
        self.slept += seconds
        await anyio.lowlevel.checkpoint()
