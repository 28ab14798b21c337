"""A bounded cache: every cache the engine keeps in a long-lived process is one of these.

    provenance   git commit per (flow file, content hash)        256 entries
    store        flow definitions already written, by hash      1,024 entries
    expressions  compiled templates, by text                     (engine/expressions.py)
    api          runs started here and not yet executed         10,000 entries (oldest dropped)

A ``flowrun serve`` that has run 100,000 runs holds no more than one that has run 1,000.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


class LRU(Generic[K, V]):
    """A mapping that keeps the ``size`` most recently used entries."""

    __slots__ = ("size", "_data")

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return default
        self._data.move_to_end(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def add(self, key: K) -> None:
        """Use as a bounded set."""
        self[key] = True  # type: ignore[assignment]

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
