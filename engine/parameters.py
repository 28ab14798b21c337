"""A run's parameters: the declared ones, with defaults applied and command-line strings converted."""
from __future__ import annotations

from typing import Any

from .errors import ParameterError
from .model import Flow

__all__ = ["coerce_params", "ParameterError"]


def coerce_params(flow: Flow, given: dict[str, Any]) -> dict[str, Any]:
    """Declared parameters with defaults applied and ``--param k=v`` strings converted."""
    out, problems = {}, []
    for name in given:
        if name not in flow.parameters:
            problems.append(f"unknown parameter '{name}'" + (f"; declared: {', '.join(flow.parameters)}"
                                                             if flow.parameters else ""))
    for name, p in flow.parameters.items():
        if name in given:
            value = given[name]
            try:
                value = _convert(value, p.type)
            except (ValueError, TypeError) as exc:
                problems.append(f"parameter '{name}': {exc}")
                continue
            if p.allowed and value not in p.allowed:
                problems.append(f"parameter '{name}': {value!r} is not one of {p.allowed}")
            out[name] = value
        elif p.has_default:
            out[name] = p.default
        else:
            problems.append(f"parameter '{name}' is required (no defaultValue)")
    if problems:
        raise ParameterError("; ".join(problems))
    return out


def _convert(value: Any, type_: str) -> Any:
    import json

    t = type_.lower()
    if not isinstance(value, str):
        return value
    if t in ("int", "integer"):
        return int(value)
    if t in ("float", "number"):
        return float(value)
    if t in ("bool", "boolean"):
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if t in ("array", "object", "secureobject"):
        parsed = json.loads(value)
        if not isinstance(parsed, list if t == "array" else dict):
            raise ValueError(f"expected a JSON {t}")
        return parsed
    return value
