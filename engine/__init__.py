"""flowrun's engine: file → validated model → plan → run → store.

Importing it imports no vendor SDK; node modules load theirs lazily.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Engine", "Run", "Step", "run_file", "load_file", "FlowError", "FlowrunError"]


def __getattr__(name: str) -> Any:  # keep `import engine` (and `flowrun --help`) cheap
    if name in ("Engine", "Run", "Step", "run_file"):
        from . import api
        return getattr(api, name)
    if name == "load_file":
        from .loader import load_file
        return load_file
    if name in ("FlowError", "FlowrunError"):
        from . import errors
        return getattr(errors, name)
    raise AttributeError(name)
