"""The letter-case rule: type names (actions, triggers) and statuses are case-insensitive, as in
Logic Apps. ``type: compose`` and ``runAfter: {a: [succeeded]}`` are ``Compose`` and
``Succeeded``; the loader canonicalises them, and the published JSON Schema accepts them in
any case while offering the canonical spelling for completion (``any_case``). Nodes whose
inputs name a status (Terminate's ``runStatus``) declare it with ``any_case`` too.
"""
from __future__ import annotations

from typing import Any

_SYNTAX = set(".^$*+?()[]{}|\\/")


def caseless(word: str) -> str:
    """A regular expression for ``word`` in any letter case (JSON Schema patterns are ECMA-262
    regexes without flags, so no ``(?i)``)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.upper() != c.lower() and len(c.upper()) == 1
                   else ("\\" + c if c in _SYNTAX else c) for c in word)


def any_case(words: Any, description: str = "") -> dict:
    """JSON Schema of a string naming one of ``words`` in any letter case."""
    words = list(words)
    out: dict[str, Any] = {"anyOf": [{"enum": words},
                                     {"type": "string", "pattern": "^(?:" + "|".join(map(caseless, words)) + ")$"}]}
    if description:
        out["description"] = description
    return out
