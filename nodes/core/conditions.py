"""Truth of an If/Until expression: a boolean, or a Logic Apps condition object.

    expression: "{{ triggerBody().total > 100 }}"
    expression: {and: [{greater: ["{{ triggerBody().total }}", 100]}, {not: {equals: [a, b]}}]}
"""
from __future__ import annotations

from typing import Any

from engine.errors import ActionError


def _cmp(op: str, a: Any, b: Any) -> bool:
    a = "" if a is None else a
    b = "" if b is None else b
    try:
        return {"greater": a > b, "greaterOrEquals": a >= b, "less": a < b, "lessOrEquals": a <= b}[op]
    except TypeError:
        raise ActionError(f"cannot compare {a!r} and {b!r} with {op}", code="InvalidCondition") from None


def truth(cond: Any) -> bool:
    if isinstance(cond, bool):
        return cond
    if isinstance(cond, str):
        low = cond.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        raise ActionError(f"condition evaluated to the string {cond!r}, not a boolean", code="InvalidCondition")
    if isinstance(cond, dict) and len(cond) == 1:
        (op, arg), = cond.items()
        if op == "and":
            return all(truth(c) for c in arg)
        if op == "or":
            return any(truth(c) for c in arg)
        if op == "not":
            return not truth(arg)
        if op == "equals":
            return arg[0] == arg[1]
        if op in ("greater", "greaterOrEquals", "less", "lessOrEquals"):
            return _cmp(op, arg[0], arg[1])
        if op == "contains":
            return arg[1] in (arg[0] or "")
        if op == "startsWith":
            return str(arg[0]).lower().startswith(str(arg[1]).lower())
        if op == "endsWith":
            return str(arg[0]).lower().endswith(str(arg[1]).lower())
    if cond is None:
        return False
    raise ActionError(f"condition must be a boolean or a condition object, not {cond!r}", code="InvalidCondition")


CONDITION_SCHEMA = {
    "description": "a boolean, a {{ template }} giving one, or a Logic Apps condition object "
                   "(and, or, not, equals, greater, greaterOrEquals, less, lessOrEquals, contains, "
                   "startsWith, endsWith)",
    "type": ["boolean", "string", "object"],
}
