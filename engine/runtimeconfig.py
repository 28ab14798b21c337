"""What an action's ``runtimeConfiguration`` asks of the executor, as Logic Apps defines it.

- ``staticResult: {name, staticResultOptions: Enabled}`` with ``definition.staticResults[name]
  = {status, outputs, error?}``: the action does not run; it ends with that status and those
  outputs (Logic Apps' own way to test a workflow). ``static_result`` is the one function the
  executor calls at its node-dispatch boundary; ``check`` reports, at validate, a name
  ``staticResults`` lacks or a status that is not one.
- ``secureData: {properties: [inputs, outputs]}``: what is listed is not stored with the step
  (``SECURED`` stands in); dependents still read the real values while the run is in memory.

Concurrency (``concurrency.repetitions``) is Foreach's own field.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .state import Status

SECURED = {"secured": "runtimeConfiguration.secureData: not stored"}
_MOCK_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.TIMEDOUT, Status.CANCELLED)


@dataclass(frozen=True)
class StaticResult:
    status: str
    outputs: Any
    error: dict | None


def _config(raw: dict) -> dict:
    config = raw.get("runtimeConfiguration")
    return config if isinstance(config, dict) else {}


def _enabled(raw: dict) -> str | None:
    """The staticResults name an action is mocked with, or None."""
    static = _config(raw).get("staticResult")
    if not isinstance(static, dict) or not isinstance(static.get("name"), str):
        return None
    return static["name"] if str(static.get("staticResultOptions", "Enabled")).lower() == "enabled" else None


def static_result(raw: dict, static_results: dict) -> StaticResult | None:
    """The mocked outcome of the action written ``raw``, from the definition's ``staticResults``
    (None: the action runs). A Failed mock's error is its ``error``, else the outputs' status
    code and body, as the real failure would carry them."""
    name = _enabled(raw)
    found = static_results.get(name) if name is not None and isinstance(static_results, dict) else None
    if not isinstance(found, dict):
        return None
    status = Status.of(found.get("status", "Succeeded")).value
    outputs = copy.deepcopy(found.get("outputs"))
    error = found.get("error") if isinstance(found.get("error"), dict) else None
    if status in (Status.FAILED, Status.TIMEDOUT) and error is None:
        code = outputs.get("statusCode") if isinstance(outputs, dict) else None
        error = {"code": f"Http{code}" if code else "StaticResult",
                 "message": f"static result '{name}' ({status})",
                 **({"details": {"statusCode": code, "body": outputs.get("body")}} if code else {})}
    return StaticResult(status, outputs, error)


def check(raw: dict, static_results: Any) -> list[tuple[str, str]]:
    """Problems of an action's staticResult, as (sub-path, message)."""
    name = _enabled(raw)
    if name is None:
        return []
    where = "runtimeConfiguration.staticResult.name"
    known = static_results if isinstance(static_results, dict) else {}
    if name not in known:
        return [(where, f"no staticResults entry '{name}' in the definition"
                        + (f"; defined: {', '.join(sorted(known))}" if known else ""))]
    status = known[name].get("status", "Succeeded") if isinstance(known[name], dict) else None
    try:
        if Status.of(status) not in _MOCK_STATUSES:
            raise ValueError
    except ValueError:
        return [(where, f"staticResults '{name}' has status {status!r}; one of "
                        f"{', '.join(s.value for s in _MOCK_STATUSES)}")]
    return []


def secured(raw: dict) -> frozenset[str]:
    """Which of inputs and outputs ``secureData`` keeps out of the store."""
    secure = _config(raw).get("secureData")
    props = secure.get("properties") if isinstance(secure, dict) else None
    return frozenset(p.lower() for p in props if isinstance(p, str)) & {"inputs", "outputs"} \
        if isinstance(props, list) else frozenset()
