"""What one firing of a trigger starts, as Logic Apps decides it.

- ``conditions: [{expression: "@..."}]``: every expression must be true for a run to start;
  they see the firing (``trigger()``/``triggers()``, ``triggerBody()``, ``triggerOutputs()``),
  nothing of a run. A false one starts nothing: a Request trigger answers 202 with
  ``status: Skipped`` and no run id (the firing is logged), a pull trigger's message is taken
  and acknowledged. A condition that fails to evaluate is the caller's 400.
- ``splitOn: "@triggerBody()?.Rows"``: the value must be an array; one run per element, each
  with its own run id, whose ``triggerBody()`` is that element (the other outputs are kept).
  At most ``SPLIT_MAX`` elements (Logic Apps' limit). A Request trigger with splitOn answers
  202 at once with the run ids (its Response cannot be synchronous, as in Logic Apps).
  Conditions are checked on each element's firing.
- ``operationOptions: SingleInstance`` (= ``runtimeConfiguration.concurrency.runs: 1``):
  how many runs of the trigger execute at once in one server; the others wait, Queued.

The evaluation is the engine's (``engine.expressions``): bounded, and payload data is never
evaluated (the expressions are the definition's; the payload is only their data).
"""
from __future__ import annotations

from typing import Any

from .errors import ActionError, FiringError
from .expressions import is_template

SPLIT_MAX = 100_000


class FiringScope:
    """What trigger conditions and splitOn see: the firing, nothing of a run."""

    def __init__(self, name: str, outputs: dict):
        self._trigger = {"name": name, "outputs": outputs, "code": "OK", "status": "Succeeded"}

    def trigger(self) -> dict:
        return self._trigger

    def triggerBody(self) -> Any:  # noqa: N802  (WDL's name)
        outputs = self._trigger["outputs"]
        return outputs.get("body") if isinstance(outputs, dict) else None

    def triggerOutputs(self) -> dict:  # noqa: N802
        return self._trigger["outputs"]

    def names(self, functions: tuple[str, ...]) -> dict:
        return {n: getattr(self, n) for n in functions}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def unavailable(*_: Any) -> Any:
            raise ActionError(f"{name}() is not available in a trigger's conditions or splitOn (no run exists yet)",
                              code="InvalidTemplate")
        return unavailable


def conditions(raw: dict) -> list[str]:
    """The condition expressions of a trigger definition (validated by the loader)."""
    found = raw.get("conditions")
    return [c["expression"] for c in found if isinstance(c, dict) and isinstance(c.get("expression"), str)] \
        if isinstance(found, list) else []


def concurrency(raw: dict) -> int | None:
    """How many runs of this trigger may execute at once (None: no limit)."""
    if str(raw.get("operationOptions", "")).lower() == "singleinstance":
        return 1
    runtime = raw.get("runtimeConfiguration")
    runs = runtime.get("concurrency", {}).get("runs") if isinstance(runtime, dict) and \
        isinstance(runtime.get("concurrency"), dict) else None
    return runs if isinstance(runs, int) and not isinstance(runs, bool) and runs > 0 else None


def check(raw: dict) -> list[tuple[str, str]]:
    """Static problems of a trigger's conditions/splitOn/options: (sub-path, message)."""
    out: list[tuple[str, str]] = []
    found = raw.get("conditions")
    if found is not None:
        if not isinstance(found, list):
            out.append(("conditions", "conditions must be a list of {expression: '@...'}"))
        else:
            for i, c in enumerate(found):
                if not (isinstance(c, dict) and is_template(c.get("expression"))):
                    out.append((f"conditions.{i}", "a condition is {expression: '@...'} (an expression)"))
    split = raw.get("splitOn")
    if split is not None and not is_template(split):
        out.append(("splitOn", "splitOn must be an expression, e.g. \"@triggerBody()?['rows']\""))
    option = raw.get("operationOptions")
    if option is not None and str(option).lower() not in TRIGGER_OPTIONS:
        out.append(("operationOptions", f"unknown trigger operationOptions {option!r} (SingleInstance "
                                        f"limits the trigger to one run at a time)"))
    return out


# Logic Apps' trigger operationOptions: SingleInstance changes what runs; the others are
# accepted as written (they concern Azure's own HTTP handling and batching).
TRIGGER_OPTIONS = ("singleinstance", "enablesplitonbatch", "includeauthorizationheadersinoutputs",
                   "disableasyncpattern", "")


def fire(evaluator: Any, name: str, raw: dict, outputs: dict) -> list[dict]:
    """The trigger outputs of each run this firing starts: ``[]`` when a condition is false,
    one per element with splitOn, else ``[outputs]``. Raises FiringError."""
    split = raw.get("splitOn")
    firings = [outputs]
    if split is not None:
        try:
            items = evaluator.evaluate(split, FiringScope(name, outputs))
        except ActionError as exc:
            raise FiringError(f"the trigger's splitOn failed: {exc.message}") from None
        if items is None:
            items = []
        if not isinstance(items, list):
            raise FiringError(f"the trigger's splitOn must give an array, not {_kind(items)}")
        if len(items) > SPLIT_MAX:
            raise FiringError(f"the trigger's splitOn gave {len(items)} items; at most {SPLIT_MAX} are split")
        firings = [{**outputs, "body": item} for item in items]
    tests = conditions(raw)
    if not tests:
        return firings
    return [f for f in firings if _met(evaluator, name, tests, f)]


def _met(evaluator: Any, name: str, tests: list[str], outputs: dict) -> bool:
    scope = FiringScope(name, outputs)
    for text in tests:
        try:
            value = evaluator.evaluate(text, scope)
        except ActionError as exc:
            raise FiringError(f"the trigger's condition failed: {exc.message}") from None
        if value is not True and not (isinstance(value, str) and value.lower() == "true"):
            return False
    return True


def _kind(value: Any) -> str:
    return {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)
