"""The trigger table: every flow of a folder, loaded and checked, with what serving it needs.

Which triggers exist is up to the node modules (``TRIGGERS``, see ``engine.triggers``); this
module names none. A flow file is served when it loads (``engine.load``: schema, semantics,
connections) and its triggers pass these checks, each reported at its file:line:column:

- every trigger: its class accepts the definition (``TriggerConfigError`` problems);
- push triggers: ``auth`` names a known kind (built-in or declared by a node module), its
  options match that kind's schema, its connection exists, has the right kind and
  resolves (the environment variables are set); ``dedupe`` only reads the request;
- the flow's own connections resolve, so a request never fails to start for a missing secret;
- flow names are unique in the folder (they are part of the URL).

A file with problems is reported and not served; the others are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import yamlpos
from engine.errors import ActionError, ConnectionError_, FlowError, Problem
from engine.expressions import WORKFLOW_FUNCTIONS, to_text
from engine.model import Flow
from engine.planner import suggest
from engine.plugin import Connection, PullTrigger, PushTrigger, TriggerConfigError, WebhookAuth

from .auth import auth_kinds, secret_names

TRIGGER_FUNCTIONS = frozenset({"trigger", "triggerBody", "triggerOutputs"})


@dataclass
class PushEntry:
    """A push trigger of a served flow, with what the request pipeline needs for it."""

    flow: Flow
    name: str
    trigger: PushTrigger
    kind: str
    auth: WebhookAuth
    options: dict
    connection: Connection | None
    dedupe: str | None
    has_response: bool
    secret_headers: frozenset[str] = frozenset()
    secret_queries: frozenset[str] = frozenset()

    @property
    def concurrency(self) -> int | None:
        """How many of this trigger's runs execute at once (SingleInstance: 1; None: no limit)."""
        from engine.firing import concurrency

        return concurrency(self.flow.triggers[self.name].raw)

    @property
    def method(self) -> str:
        return self.trigger.method

    @property
    def relative_path(self) -> str | None:
        return self.trigger.relative_path

    @property
    def schema(self) -> dict | None:
        return self.trigger.schema

    @property
    def path(self) -> str:
        base = f"/flows/{self.flow.name}/triggers/{self.name}"
        return f"{base}/{self.relative_path.strip('/')}" if self.relative_path else base

    def match(self, rest: str) -> dict[str, str] | None:
        """Relative path parameters, or None when ``rest`` is not this trigger's path (a SAS
        trigger's callback URL has ``/invoke`` before its relative path, as in Logic Apps)."""
        if self.kind == "sas":
            head, _, tail = rest.strip("/").partition("/")
            if head == "invoke":
                rest = tail
        return self.trigger.match(rest)

    def callback_url(self, base: str) -> str | None:
        """The signed URL a SAS trigger is called on (``engine.sas``), else None."""
        if self.kind != "sas":
            return None
        from engine import sas

        return sas.callback_url(self.auth.key, base, self.flow.name, self.name, self.relative_path)

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
class PullEntry:
    """A pull trigger of a served flow: ``flowrun serve`` runs ``cls(definition, host)``."""

    flow: Flow
    name: str
    cls: type[PullTrigger]
    definition: dict

    @property
    def key(self) -> tuple[str, str]:
        return (self.flow.name, self.name)

    @property
    def version(self) -> tuple:
        """Changes when the definition does (a reload restarts the trigger then)."""
        return (self.cls, repr(sorted(self.definition.items(), key=lambda kv: kv[0])))


@dataclass
class Table:
    """What a folder of flows serves. Replaced whole on reload, never edited in place."""

    flows: dict[str, Flow] = field(default_factory=dict)  # by flow name
    files: dict[str, str] = field(default_factory=dict)  # file -> flow name
    push: dict[tuple[str, str], PushEntry] = field(default_factory=dict)
    pull: dict[tuple[str, str], PullEntry] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)  # file -> problems

    def request(self, flow: str, trigger: str) -> PushEntry | None:
        return self.push.get((flow, trigger))

    def add(self, file: str, flow: Flow, push: list[PushEntry], pull: list[PullEntry]) -> None:
        self.flows[flow.name] = flow
        self.files[file] = flow.name
        for t in push:
            self.push[(flow.name, t.name)] = t
        for r in pull:
            self.pull[r.key] = r

    def trigger_names(self, flow: str) -> list[str]:
        return [t for (f, t) in list(self.push) + list(self.pull) if f == flow]


IGNORE_MARKER = ".flowrunignore"  # a folder holding this file is not scanned for flows (a dbt project, fixtures)


def flow_files(folder: str | Path) -> list[Path]:
    """The flow files of a folder (every *.yaml/*.yml but connections files and flow tests
    (``*.test.yaml``), and every Logic Apps ``workflow.json``, under any depth, skipping folders that
    hold a ``.flowrunignore`` file), or the file itself. A Standard app folder (host.json + one folder
    per workflow) is such a folder."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    skipped = {m.parent for m in folder.rglob(IGNORE_MARKER)}
    return sorted(f for f in folder.rglob("*") if (f.suffix in (".yaml", ".yml") or f.name == "workflow.json")
                  and f.is_file() and f.name not in ("connections.yaml", "connections.yml")
                  and not f.name.endswith((".test.yaml", ".test.yml"))  # flow tests (engine.testing)
                  and not any(p in skipped for p in f.parents))


APP_FILES = ("parameters.json", "connections.json", "local.settings.json")  # read beside a Standard workflow


def watched_files(folder: str | Path) -> list[Path]:
    """What a flow folder's flows are read from: the flow files and the app files of each
    Standard app folder among them (present or not: one appearing changes the flows too)."""
    from engine.definitions import app_folder

    files = flow_files(folder)
    apps = sorted({a for f in files if f.name == "workflow.json" for a in [app_folder(f)] if a is not None})
    return files + [a / name for a in apps for name in APP_FILES]


def load_folder(engine: Any, folder: str | Path, previous: Table | None = None) -> Table:
    """Load every flow file of ``folder``. With ``previous`` (a reload), a file that now has
    problems keeps being served as it was, and its problems are reported."""
    table = Table()
    for path in flow_files(folder):
        file = str(path)
        try:
            flow, push, pull = load_flow(engine, path)
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
        table.add(file, flow, push, pull)
    return table


def _keep(table: Table, previous: Table, file: str) -> None:
    name = previous.files[file]
    flow = previous.flows[name]
    table.add(file, flow, [t for (f, _), t in previous.push.items() if f == name],
              [r for (f, _), r in previous.pull.items() if f == name])


def load_flow(engine: Any, path: str | Path) -> tuple[Flow, list[PushEntry], list[PullEntry]]:
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
    has_response = flow.replies
    push, pull = [], []
    for name, trig in flow.triggers.items():
        where = f"triggers.{name}"
        cls = engine.registry.trigger(trig.type)
        if cls is None:  # the schema reported it
            continue
        try:
            instance = cls(trig.raw, None)
        except TriggerConfigError as exc:
            for sub, message in exc.problems:
                problem(f"{where}.{sub}" if sub else where, message)
            continue
        if cls.mode == "push":
            entry = _push(engine, flow, name, trig.raw, instance, kinds, has_response, problem, where)
            if entry is not None:
                push.append(entry)
        elif cls.mode == "pull":
            pull.append(PullEntry(flow, name, cls, trig.raw))
    if problems:
        raise FlowError(sorted(problems, key=lambda p: (p.line, p.column)))
    return flow, push, pull


def _positions(flow: Flow) -> dict:
    from engine.loader import positions

    return positions(flow)


def _push(engine: Any, flow: Flow, name: str, raw: dict, trigger: PushTrigger, kinds: dict,
          has_response: bool, problem: Any, where: str) -> PushEntry | None:
    from jsonschema import Draft202012Validator

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
    if kind in ("none", "sas"):
        if conn_name:
            problem(f"{where}.auth.connection", f"auth type {kind} takes no connection")
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
    if hasattr(instance, "bind"):  # sas: the key and what the signature names
        from engine import sas

        instance.bind(sas.key(engine), flow.name, name)
    headers, queries = secret_names(instance, options)
    if kind != "none":
        if "header" in options and isinstance(options["header"], str):
            headers |= {options["header"].lower()}
        if "query" in options and isinstance(options["query"], str):
            queries |= {options["query"]}
    return PushEntry(flow=flow, name=name, trigger=trigger, kind=kind, auth=instance, options=options,
                     connection=connection, dedupe=dedupe, has_response=has_response,
                     secret_headers=headers, secret_queries=queries)
