"""Waiting on a condition instead of the wall clock.

    wait_until(lambda: recorder.requests, "the SDK never called the API")

polls ``predicate`` until it returns something truthy and returns that value. ``timeout`` is
only a safety net for a test that would otherwise hang: a passing test never waits for it,
and no test's meaning depends on how long something took.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

TIMEOUT = 30.0  # generous: on a loaded 2-core machine a subprocess can take seconds to start
INTERVAL = 0.005


def wait_until(predicate: Callable[[], T], message: str = "condition never became true", *,
               timeout: float = TIMEOUT, interval: float = INTERVAL) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        time.sleep(interval)
