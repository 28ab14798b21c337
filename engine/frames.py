"""The evaluation scope of one block instance: what ``{{ }}`` templates can see.

A Frame holds the results of the actions of one block run (the root, a Scope, an If
branch, one Foreach iteration), a link to the enclosing frame and, for loop iterations,
the current item. Its methods are the workflow functions templates call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ActionError
from .state import SKIPPED


@dataclass(slots=True)
class ActionResult:
    name: str
    type: str
    status: str
    inputs: Any = None
    outputs: Any = None
    error: Any = None
    start: float | None = None
    end: float | None = None
    attempts: int = 0
    frames: list["Frame"] = field(default_factory=list)  # container: its block runs (a loop: those in flight)
    path: str | None = None
    interrupted: bool = False  # in flight when a process died, run again on resume
    rows: Any = None  # a finished loop: the summary result() reads its rows through (engine.looprows)
    open_attempt: tuple[int, float] | None = None  # (number, start) of the attempt not recorded yet

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "status": self.status, "inputs": self.inputs,
                "outputs": self.outputs, "error": self.error, "startTime": _iso(self.start),
                "endTime": _iso(self.end), "attempts": self.attempts}


def _iso(ts: float | None) -> str | None:
    import datetime as dt

    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Frame:
    __slots__ = ("runtime", "parent", "prefix", "results", "loop", "item_value", "index", "_names", "block")

    def __init__(self, runtime: Any, parent: "Frame | None", prefix: str,
                 loop: str | None = None, item: Any = None, index: int | None = None):
        self.runtime = runtime
        self.parent = parent
        self.prefix = prefix  # path of actions in this frame: f"{prefix}/{name}" (or name at root)
        self.results: dict[str, ActionResult] = {}
        self.loop = loop
        self.item_value = item
        self.index = index
        self._names: dict | None = None
        self.block: Any = None  # the block this frame runs, when it runs one

    def names(self, functions: tuple[str, ...]) -> dict:
        """The workflow functions bound to this frame, as templates see them (built once)."""
        if self._names is None:
            self._names = {n: getattr(self, n) for n in functions}
        return self._names

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def lookup(self, name: str) -> ActionResult:
        f: Frame | None = self
        while f is not None:
            r = f.results.get(name)
            if r is not None:
                return r
            f = f.parent
        r = self.runtime.latest.get(name)
        if r is not None:
            return r
        if name in self.runtime.flow.actions:
            raise ActionError(f"action '{name}' has not run", code="ActionNotRun")
        raise ActionError(f"unknown action '{name}'", code="UnknownAction")

    def _loop_frame(self, name: str | None) -> "Frame":
        f: Frame | None = self
        while f is not None:
            if f.loop is not None and (name is None or f.loop == name):
                return f
            f = f.parent
        raise ActionError("item() is only available inside a loop" if name is None
                          else f"'{name}' is not a loop around this action", code="NotInLoop")

    # -- workflow functions --------------------------------------------------------------
    def trigger(self) -> dict:
        self._headers_kept()
        return self.runtime.trigger

    def triggerBody(self) -> Any:
        return self.runtime.trigger.get("outputs", {}).get("body")

    def triggerOutputs(self) -> dict:
        self._headers_kept()
        return self.runtime.trigger.get("outputs", {})

    def _headers_kept(self) -> None:
        """A resumed run whose credential headers could not be brought back fails the read
        (engine.encrypted), rather than show the flow the mask where the value was."""
        from .errors import InvalidTemplate
        from .encrypted import lost_error

        lost = lost_error(self.runtime.trigger.get("outputs"))
        if lost is not None:  # (an InvalidTemplate keeps its code through the evaluator)
            raise InvalidTemplate(lost[1], code=lost[0])

    def outputs(self, name: str) -> Any:
        return self.lookup(name).outputs

    def body(self, name: str) -> Any:
        """The response body of an HTTP-shaped result ({statusCode, body, ...}), else the outputs.

        (A vendor resource may well have a field called "body", like an SMS: it is not unwrapped.)"""
        out = self.lookup(name).outputs
        if isinstance(out, dict) and "body" in out and "statusCode" in out:
            return out["body"]
        return out

    def actions(self, name: str) -> dict:
        return self.lookup(name).as_dict()

    def result(self, name: str) -> list[dict]:
        container = self.lookup(name)
        owner = self.runtime.flow.actions[name]
        if container.status == SKIPPED:
            return []
        if owner.node.loops:  # rows read from the store on demand
            from .looprows import loop_result

            return loop_result(self.runtime, container, owner) if container.path else []
        if not container.frames:
            return []
        return [f.results[n].as_dict() for f in container.frames for n in _inner_names(owner)
                if n in f.results]

    def variables(self, name: str) -> Any:
        try:
            return self.runtime.variables.get(name)
        except KeyError:
            raise ActionError(f"variable '{name}' is not initialized", code="UnknownVariable") from None

    def parameters(self, name: str) -> Any:
        try:
            return self.runtime.params[name]
        except KeyError:
            raise ActionError(f"unknown parameter '{name}'", code="UnknownParameter") from None

    def item(self) -> Any:
        return self._loop_frame(None).item_value

    def items(self, name: str) -> Any:
        return self._loop_frame(name).item_value

    def iterationIndexes(self, name: str) -> int | None:
        return self._loop_frame(name).index

    def appsetting(self, name: str) -> Any:
        """An app setting: the flow's (a Standard app's local.settings.json Values), else the environment.

        A secret setting is registered with the redactor as it is read, before the flow holds
        it: one whose name says so (``engine.connections.secret_setting``: KEY, SECRET,
        PASSWORD, TOKEN, CONNECTIONSTRING, SAS, SIG, CREDENTIAL, PWD) or an environment
        variable a connection reads its secret from. The flow uses the real value; nothing
        stored, logged or printed holds it, in any of its encodings."""
        import os

        from .connections import secret_setting

        if not isinstance(name, str):
            raise ActionError(f"appsetting: the setting's name must be a string, not {type(name).__name__}",
                              code="InvalidTemplate")
        settings = getattr(self.runtime.flow, "app_settings", None) or {}
        value = settings[name] if name in settings else os.environ.get(name)
        if value is None:
            raise ActionError(f"app setting '{name}' is not set (neither in the app's settings nor in the "
                              f"environment)", code="InvalidTemplate")
        if isinstance(value, str) and (secret_setting(name) or name in self._connection_vars()):
            redactor = getattr(getattr(self.runtime, "engine", None), "redactor", None)
            if redactor is not None:
                redactor.add(value)
        return value

    def _connection_vars(self) -> set[str]:
        engine = getattr(self.runtime, "engine", None)
        try:
            return engine.connections_for(self.runtime.flow.file).env_vars()
        except Exception:  # noqa: BLE001  (no engine, no connections file: no connection reads the env)
            return set()

    def action(self) -> dict:
        """The current action's own result: only in its trackedProperties (``ActionScope``)."""
        raise ActionError("action() is only available in an action's trackedProperties (the action's own "
                          "result, once it has finished)", code="InvalidTemplate")

    def listCallbackUrl(self) -> str:  # noqa: N802  (WDL's name)
        url = getattr(self.runtime.flow, "callback_url", None)
        if not url:
            raise ActionError("listCallbackUrl(): this flow has no callback URL (it is known when the flow is "
                              "served with a Request trigger)", code="InvalidTemplate")
        return url

    def workflow(self) -> dict:
        rt = self.runtime
        return {"name": rt.flow.name, "id": rt.flow.name, "type": "flowrun",
                "run": {"name": rt.run_id, "id": rt.run_id}}


def _inner_names(owner: Any) -> list[str]:
    return [n for b in owner.blocks.values() for n in b.actions]


class ActionScope:
    """What an action's trackedProperties see: its frame's functions, and ``action()`` giving
    the action's own finished result (status, inputs, outputs, error, times)."""

    __slots__ = ("frame", "result")

    def __init__(self, frame: Frame, result: ActionResult):
        self.frame, self.result = frame, result

    def names(self, functions: tuple[str, ...]) -> dict:
        return {**self.frame.names(functions), "action": self.result.as_dict}
