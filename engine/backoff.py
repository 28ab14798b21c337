"""The wait between tries of something that failed for a while (a database away): no imports,
so the listener and the worker use it whichever state database they have."""
from __future__ import annotations

import random


class Backoff:
    """Capped exponential backoff with jitter: attempt n waits between half and all of
    ``min(cap, base * 2**n)``, so processes cut off together do not come back in step."""

    def __init__(self, base: float = 0.1, cap: float = 10.0):
        self.base, self.cap, self.attempts = base, cap, 0

    def next(self) -> float:
        """Seconds to wait before the next attempt (and count this one)."""
        ceiling = min(self.cap, self.base * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
