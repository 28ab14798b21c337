"""Sealed values: a secret an action produces (a Tableau embed token) that only the run's reply
may carry.

The action puts a stand-in in its outputs (``context.seal(token, ttl=...)`` returns
``flowrun-sealed:<32 hex>``); the stand-in is what the state database, the logs, templates and
``flowrun show`` see. When a ``Response`` sends the reply to the caller, every stand-in in it
(anywhere inside a string: a URL with ``?token=...`` works) is swapped for the value, in the
reply that leaves the process only: the stored reply keeps the stand-in.

A value is sealed for one run: only that run's reply unseals it. A stand-in is no secret (it is
in the state database, in ``flowrun show``), so another run whose reply echoes one (a Response
of ``triggerBody()``) sends the stand-in, never the value. Values live in this process's memory
until their TTL runs out (at most ``MAX_TTL``); after a restart a stand-in is left as it is.
"""
from __future__ import annotations

import re
import secrets
import threading
from typing import Any

from .lru import LRU

PREFIX = "flowrun-sealed:"
MAX_TTL = 3600.0
_STAND_IN = re.compile(re.escape(PREFIX) + r"[0-9a-f]{32}")
_vault: LRU[str, tuple[str, float, str]] = LRU(10_000)  # stand-in -> (value, expiry, run id)
_lock = threading.Lock()


def seal(value: str, *, ttl: float, now: float, run_id: str) -> str:
    """A stand-in for ``value``, unsealed by ``unseal`` for ``run_id`` until ``now + ttl``."""
    stand_in = PREFIX + secrets.token_hex(16)
    with _lock:
        _vault[stand_in] = (value, now + min(max(ttl, 0.0), MAX_TTL), run_id)
    return stand_in


def unseal(value: Any, *, now: float, run_id: str) -> Any:
    """``value`` (a reply: strings, lists, mappings) with every live stand-in ``run_id`` sealed
    replaced by its value."""
    if isinstance(value, str):
        return _STAND_IN.sub(lambda m: _lookup(m.group(), now, run_id), value) if PREFIX in value else value
    if isinstance(value, dict):
        return {k: unseal(v, now=now, run_id=run_id) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unseal(v, now=now, run_id=run_id) for v in value]
    return value


def _lookup(stand_in: str, now: float, run_id: str) -> str:
    with _lock:
        kept = _vault.get(stand_in)
    if kept is None or kept[1] <= now or kept[2] != run_id:
        return stand_in
    return kept[0]
