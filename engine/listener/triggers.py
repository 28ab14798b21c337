"""The trigger table: every flow of a folder, loaded and checked, with what serving it needs.

A flow file is served when it loads (``engine.load``: schema, semantics, connections) and
its triggers pass the listener's own checks, each reported at its file:line:column:

- Request: ``auth`` names a known kind (built-in or declared by a node module), its options
  match that kind's schema, its connection exists, has the right kind and resolves (the
  environment variables are set); ``inputs.schema`` is a valid JSON Schema;
  ``inputs.relativePath`` parameters are names; ``dedupe`` only reads the request;
- Recurrence: the recurrence parses (see ``schedules``);
- the flow's own connections resolve, so a request never fails to start for a missing secret;
- flow names are unique in the folder (they are part of the URL).

A file with problems is reported and not served; the others are.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import yamlpos
from engine.errors import ActionError, ConnectionError_, FlowError, Problem
from engine.expressions import WORKFLOW_FUNCTIONS, to_text
from engine.model import Flow
from engine.planner import suggest
from engine.plugin import Connection, WebhookAuth

from .auth import auth_kinds, secret_names
from .schedules import Recurrence

TRIGGER_FUNCTIONS = frozenset({"trigger", "triggerBody", "triggerOutputs"})
_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class RequestTrigger:
    flow: Flow
    name: str
    method: str
    relative_path: str | None
    pattern: re.Pattern | None
    schema: dict | None
    validator: Any
    kind: str
    auth: WebhookAuth
    options: dict
    connection: Connection | None
    dedupe: str | None
    has_response: bool
    secret_headers: frozenset[str] = frozenset()
    secret_queries: frozenset[str] = frozenset()

    @property
    def path(self) -> str:
        base = f"/flows/{self.flow.name}/triggers/{self.name}"
        return f"{base}/{self.relative_path.strip('/')}" if self.relative_path else base

    def match(self, rest: str) -> dict[str, str] | None:
        """Relative path parameters, or None when ``rest`` is not this trigger's path."""
        rest = rest.strip("/")
        if self.pattern is None:
            return {} if not rest else None
        m = self.pattern.match(rest)
        return m.groupdict() if m else None

    def dedupe_key(self, outputs: dict, evaluator: Any, auth_key: str | None) -> str | None:
        """The run's de-duplication key: the ``dedupe`` template's value, else the auth's key."""
        if self.dedupe:
            value = evaluator.evaluate(self.dedupe, _RequestScope(self.name, outputs))
            value = None if value is None else to_text(value)
        else:
            value = auth_key
        return f"{self.name}:{value}" if value else None


class _RequestScope:
    """What a ``dedupe`` template sees: the request, nothing of a run."""

    def __init__(self, name: str, outputs: dict):
        self._trigger = {"name": name, "outputs": outputs}

    def trigger(self) -> dict:
        return self._trigger

    def triggerBody(self) -> Any:
        return self._trigger["outputs"].get("body")

    def triggerOutputs(self) -> dict:
        return self._trigger["outputs"]

    def names(self, functions: tuple[str, ...]) -> dict:
        return {n: getattr(self, n) for n in functions}

    def __getattr__(self, name: str) -> Any:
        def unavailable(*_: Any) -> Any:
            raise ActionError(f"{name}() is not available in a trigger's dedupe expression")
        return unavailable


@dataclass
class RecurrenceTrigger:
    flow: Flow
    name: str
    recurrence: Recurrence

    @property
    def key(self) -> tuple[str, str]:
        return (self.flow.name, self.name)


@dataclass
class Table:
    """What a folder of flows serves. Replaced whole on reload, never edited in place."""

    flows: dict[str, Flow] = field(default_factory=dict)  # by flow name
    files: dict[str, str] = field(default_factory=dict)  # file -> flow name
    requests: dict[tuple[str, str], RequestTrigger] = field(default_factory=dict)
    recurrences: dict[tuple[str, str], RecurrenceTrigger] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)  # file -> problems

    def request(self, flow: str, trigger: str) -> RequestTrigger | None:
        return self.requests.get((flow, trigger))

    def add(self, file: str, flow: Flow, requests: list[RequestTrigger],
            recurrences: list[RecurrenceTrigger]) -> None:
        self.flows[flow.name] = flow
        self.files[file] = flow.name
        for t in requests:
            self.requests[(flow.name, t.name)] = t
        for r in recurrences:
            self.recurrences[r.key] = r


def flow_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(f for f in folder.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()
                  and f.name not in ("connections.yaml", "connections.yml"))


def load_folder(engine: Any, folder: str | Path, previous: Table | None = None) -> Table:
    """Load every flow file of ``folder``. With ``previous`` (a reload), a file that now has
    problems keeps being served as it was, and its problems are reported."""
    table = Table()
    for path in flow_files(folder):
        file = str(path)
        try:
            flow, requests, recurrences = load_flow(engine, path)
        except FlowError as exc:
            table.problems[file] = exc.problems
            if previous is not None and file in previous.files:
                _keep(table, previous, file)
            continue
        other = table.flows.get(flow.name)
        if other is not None:
            line, col = _positions(flow).get("name", (1, 1))
            table.problems[file] = [Problem(file, line, col, "name", f"flow name '{flow.name}' is also used "
                                            f"by {other.file}; names must be unique (they are part of the URL)")]
            continue
        table.add(file, flow, requests, recurrences)
    return table


def _keep(table: Table, previous: Table, file: str) -> None:
    name = previous.files[file]
    flow = previous.flows[name]
    table.add(file, flow, [t for (f, _), t in previous.requests.items() if f == name],
              [r for (f, _), r in previous.recurrences.items() if f == name])


def load_flow(engine: Any, path: str | Path) -> tuple[Flow, list[RequestTrigger], list[RecurrenceTrigger]]:
    """Load one flow and check what serving it needs; FlowError lists every problem."""
    flow = engine.load(path)
    positions = _positions(flow)
    problems: list[Problem] = []

    def problem(where: str, message: str) -> None:
        line, col = yamlpos.position(positions, where)
        problems.append(Problem(flow.file, line, col, where, message))

    try:
        engine.connections_for(flow.file).resolve(flow.connections_used(), engine.redactor)
    except ConnectionError_ as exc:
        problem("", f"the flow cannot run: {exc}")
    kinds = auth_kinds(engine.registry)
    has_response = any(a.type == "Response" for a in flow.actions.values())
    requests, recurrences = [], []
    for name, trig in flow.triggers.items():
        where = f"triggers.{name}"
        if trig.type == "Request":
            t = _request(engine, flow, name, trig.raw, kinds, has_response, problem, where)
            if t is not None:
                requests.append(t)
        elif trig.type == "Recurrence":
            try:
                recurrences.append(RecurrenceTrigger(flow, name, Recurrence.parse(trig.raw["recurrence"])))
            except ValueError as exc:
                sub = exc.args[1] if len(exc.args) > 1 else ""
                problem(f"{where}.recurrence" + (f".{sub}" if sub else ""), str(exc.args[0]))
    if problems:
        raise FlowError(sorted(problems, key=lambda p: (p.line, p.column)))
    return flow, requests, recurrences


def _positions(flow: Flow) -> dict:
    return yamlpos.load(flow.source, flow.file)[1]


def _request(engine: Any, flow: Flow, name: str, raw: dict, kinds: dict, has_response: bool,
             problem: Any, where: str) -> RequestTrigger | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    inputs = raw.get("inputs") or {}
    method = str(inputs.get("method", "POST")).upper()
    relative, pattern = inputs.get("relativePath"), None
    if relative:
        names = _PARAM.findall(relative)
        bad = [n for n in names if not _NAME.match(n)]
        dupes = {n for n in names if names.count(n) > 1}
        if bad or dupes:
            problem(f"{where}.inputs.relativePath",
                    f"path parameters must be distinct names: {', '.join(sorted(set(bad) | dupes))}")
        else:
            regex = "".join(f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part)
                            for i, part in enumerate(_PARAM.split(relative.strip("/"))))
            pattern = re.compile(f"^{regex}$")
    schema, validator = inputs.get("schema"), None
    if schema is not None:
        try:
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema)
        except SchemaError as exc:
            sub = ".".join(str(p) for p in exc.absolute_path)
            problem(f"{where}.inputs.schema" + (f".{sub}" if sub else ""), f"not a valid JSON Schema: {exc.message}")

    auth = raw.get("auth") or {}
    kind = auth.get("type")
    cls = kinds.get(kind)
    if cls is None:
        problem(f"{where}.auth.type", f"unknown auth type {kind!r}{suggest(str(kind), kinds)}; "
                                      f"known: {', '.join(sorted(kinds))}")
        return None
    options = {k: v for k, v in auth.items() if k not in ("type", "connection")}
    for err in Draft202012Validator(cls.options or {"type": "object"}).iter_errors(options):
        sub = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = set((cls.options or {}).get("properties", {}))
            for key in options:
                if key not in allowed:
                    problem(f"{where}.auth.{key}", f"unknown option '{key}' for auth type {kind}"
                                                   f"{suggest(str(key), allowed)}")
        else:
            problem(f"{where}.auth" + (f".{sub}" if sub else ""), err.message)
    connection = None
    conn_name = auth.get("connection")
    if kind == "none":
        if conn_name:
            problem(f"{where}.auth.connection", "auth type none takes no connection")
    elif not conn_name:
        need = f" of kind '{cls.connection}'" if cls.connection else ""
        problem(f"{where}.auth", f"auth type {kind} needs a connection{need} holding its secret "
                                 f"(connection: NAME)")
    else:
        conns = engine.connections_for(flow.file)
        spec = conns.specs.get(conn_name)
        if spec is None:
            problem(f"{where}.auth.connection", f"unknown connection '{conn_name}'"
                                                f"{suggest(conn_name, conns.specs)} in {conns.file}")
        elif cls.connection and spec["kind"] != cls.connection:
            problem(f"{where}.auth.connection", f"connection '{conn_name}' is of kind '{spec['kind']}', "
                                                f"auth type {kind} needs '{cls.connection}'")
        else:
            try:
                connection = conns.resolve({conn_name}, engine.redactor)[conn_name]
            except ConnectionError_ as exc:
                problem(f"{where}.auth.connection", str(exc))

    dedupe = raw.get("dedupe")
    if dedupe is not None:
        found = engine.evaluator.analyze(dedupe)
        if found.error:
            problem(f"{where}.dedupe", found.error)
        for unknown in found.unknown:
            problem(f"{where}.dedupe", f"unknown name '{unknown}'")
        for fn, _ in found.calls:
            if fn in WORKFLOW_FUNCTIONS and fn not in TRIGGER_FUNCTIONS:
                problem(f"{where}.dedupe", f"{fn}() is not available here: dedupe reads only the request "
                                           f"(trigger(), triggerBody(), triggerOutputs())")
    instance = cls()
    headers, queries = secret_names(instance, options)
    if kind != "none":
        if "header" in options and isinstance(options["header"], str):
            headers |= {options["header"].lower()}
        if "query" in options and isinstance(options["query"], str):
            queries |= {options["query"]}
    return RequestTrigger(flow=flow, name=name, method=method, relative_path=relative, pattern=pattern,
                          schema=schema, validator=validator, kind=kind, auth=instance, options=options,
                          connection=connection, dedupe=dedupe, has_response=has_response,
                          secret_headers=headers, secret_queries=queries)
