"""What ``flowrun validate`` checks: everything ``flowrun serve`` checks before it serves a flow.

Warnings (``Report.warnings``) are the nodes' own (``Node.warnings``) and unset secrets.

The loader's checks (syntax, schema, runAfter, expressions, connections named and of the
right kind), then the listener's own (``engine.listener.triggers.load_flow``): each trigger's
definition (time zones, cron fields, ...), auth kinds, their options and connections,
``dedupe`` expressions, and that every connection the flow uses resolves. The same code runs
in both, so the two cannot drift.

One difference, on purpose: an environment variable that holds a secret and is not set here
is a *warning* (the machine that serves the flow may set it); ``--strict`` makes warnings
errors. Everything else is an error.

``check_body`` is what ``flowrun run --input`` checks: the body against the schema of the
trigger the run takes, as ``serve`` answers 400 for it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import connections as _connections
from .errors import FlowError, Problem
from .loader import load_file, tools
from .model import Flow
from .registry import Registry


@dataclass
class Report:
    """One file's outcome: errors (it would not be served) and warnings."""

    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class _Checking:
    """The part of ``Engine`` that ``load_flow`` reads, without a state database; secrets that
    are not set are stood in for (and reported as warnings) so every other check still runs."""

    def __init__(self, registry: Registry, connections: Any):
        self.registry = registry
        self.evaluator = tools(registry)[1]
        self.redactor = _connections.Redactor()
        self._connections = _StandIn(connections)

    def connections_for(self, flow_file: str) -> Any:
        return self._connections

    def load(self, path: str | Path) -> Flow:
        return load_file(path, registry=self.registry, connections=self._connections.real)


class _StandIn:
    """A Connections whose ``resolve`` treats an unset secret variable as set."""

    def __init__(self, real: Any):
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def resolve(self, names: set[str], redactor: Any, env: Any = None) -> Any:
        env = dict(os.environ if env is None else env)
        for name in names:
            for var in (self.real.specs.get(name) or {}).get("secrets", {}).values():
                if not env.get(var):
                    env[var] = "unset"
        return self.real.resolve(names, redactor, env)


def check_file(path: str | Path, registry: Registry, connections: Any) -> Report:
    """Every problem ``serve`` would find in the flow file ``path``, and the missing secrets."""
    from .listener.triggers import load_flow

    report = Report(str(path))
    conns = connections if connections is not None else _connections.Connections.empty(registry)
    try:
        flow, _, _ = load_flow(_Checking(registry, conns), path)
    except FlowError as exc:
        report.errors = exc.problems
        return report
    report.warnings = _sorted_problems(list(flow.warnings) + _missing_secrets(flow, conns))
    return report


def _missing_secrets(flow: Flow, conns: Any) -> list[Problem]:
    from . import yamlpos

    used: dict[str, str] = {}  # connection -> the first place that uses it
    for action in flow.actions.values():
        if action.connection:
            used.setdefault(action.connection, f"{action.where}.connection")
        for name in action.node.more_connection_names(action.raw):
            used.setdefault(name, f"{action.where}.inputs.{action.node.more_connections}")
    for name, trigger in flow.triggers.items():
        auth = trigger.raw.get("auth")
        if isinstance(auth, dict) and isinstance(auth.get("connection"), str):
            used.setdefault(auth["connection"], f"triggers.{name}.auth.connection")
    from .loader import positions as positions_of

    positions = positions_of(flow) if used else {}
    out = []
    for name, where in sorted(used.items(), key=lambda kv: kv[1]):
        for key, var in sorted((conns.specs.get(name) or {}).get("secrets", {}).items()):
            if not os.environ.get(var):
                line, col = yamlpos.position(positions, where)
                out.append(Problem(flow.file, line, col, where,
                                   f"environment variable {var} (secret '{key}' of connection '{name}') is "
                                   f"not set here; the flow cannot run where it is not set"))
    return out


def _sorted_problems(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column, p.path))


def check_body(flow: Flow, registry: Registry, body: Any, trigger: str | None = None) -> list[str]:
    """Every way ``body`` fails the schema of the trigger a run of ``flow`` takes (the named
    one, else the first), as ``serve`` checks a request body: ``["/path: message", ...]``."""
    name = trigger or next(iter(flow.triggers), None)
    definition = flow.triggers.get(name) if name else None
    cls = registry.trigger(definition.type) if definition is not None else None
    if cls is None or not hasattr(cls, "body_problems"):
        return []
    try:
        instance = cls(definition.raw, None)
    except Exception:  # noqa: BLE001  a bad definition: the loader and validate report it
        return []
    return [f"{p['path']}: {p['message']}" for p in instance.body_problems(body)]
