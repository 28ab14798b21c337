"""Test files (``*.test.yaml``, beside the flow they test) → validated ``TestFile``s.

    # flows/hello.test.yaml
    flow: hello.yaml                 # optional: the flow beside it with the same name (hello.yaml)
    tests:
      greets by name:
        input: {name: Ada}           # the trigger body
        parameters: {greeting: Hi}
        trigger: {name: web, headers: {x-id: "7"}}   # which trigger, and more of its outputs
                                     # (a pull trigger's: messageId, topic, partition, ...)
        mocks:                       # per action (by name): it does not run, this answers
          charge: {outputs: {id: ch_1, status: succeeded}}
          notify: {status: Failed, error: {code: Unreachable, message: no route}}
          price: [{outputs: 10}, {status: Failed}]     # one per loop iteration (the last repeats)
        expect:
          status: Succeeded          # the run's status
          actions: {greet: Succeeded, notify: Failed}
          outputs: {message: "Hi, Ada!"}          # the run's outputs (the whole of each one named)
          response: {statusCode: 200}             # the keys named, of the Response sent
          that:                                   # expressions that must be true
            - "{{ outputs('greet') | length > 3 }}"
          values:                                 # expression: the value it must have
            "{{ variables('total') }}": 12.5

Every problem is reported at once, each at its file:line:column; nothing half-valid is returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import yamlpos
from ..errors import FlowError, Problem
from ..standins import StandIn, stand_in
from ..state import RUN_AFTER, Status

SUFFIX = ".test.yaml"
MAX_BYTES = 4_000_000

_STATUS = {"type": "string", "description": "Succeeded, Failed, TimedOut (any letter case)"}
_MOCK = {"type": "object", "additionalProperties": False, "properties": {
    "status": _STATUS, "outputs": {}, "error": {"type": ["object", "string"]}}}
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["tests"],
    "properties": {
        "flow": {"type": "string", "minLength": 1},
        "tests": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "object", "additionalProperties": False, "properties": {
                "description": {"type": "string"},
                "input": {},
                "parameters": {"type": "object"},
                "trigger": {"type": "object", "properties": {  # more of the trigger's outputs
                    "name": {"type": "string"}, "headers": {"type": "object"}, "body": False,
                    "queries": {"type": "object"}, "relativePathParameters": {"type": "object"}}},
                "mocks": {"type": "object", "additionalProperties": {"anyOf": [
                    _MOCK, {"type": "array", "minItems": 1, "items": _MOCK}]}},
                "expect": {"type": "object", "additionalProperties": False, "properties": {
                    "status": _STATUS,
                    "actions": {"type": "object", "additionalProperties": _STATUS},
                    "outputs": {"type": "object"},
                    "response": {"type": "object"},
                    "error": {"type": "object"},
                    "that": {"type": "array", "items": {"type": "string"}},
                    "values": {"type": "object"}}}}}}}}


@dataclass
class FlowTest:
    __test__ = False  # not a pytest class

    name: str
    file: str
    line: int
    input: Any = None
    parameters: dict = field(default_factory=dict)
    trigger: dict = field(default_factory=dict)
    mocks: dict[str, StandIn | list[StandIn]] = field(default_factory=dict)
    expect: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass
class TestFile:
    __test__ = False

    file: str
    flow_file: Path
    tests: list[FlowTest]


def test_files(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """The test files named, or found under the folders named (folders holding a
    ``.flowrunignore`` are skipped, as ``flowrun validate`` skips them, and hidden folders such as
    ``.venv`` and ``.git``)."""
    from ..listener.triggers import IGNORE_MARKER

    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise FlowError([Problem(str(path), 1, 1, "", "no such file or folder")])
        skipped = {m.parent for m in path.rglob(IGNORE_MARKER)}
        found += sorted(f for f in path.rglob("*" + SUFFIX)
                        if f.is_file() and not any(s in f.parents for s in skipped)
                        and not any(part.startswith(".") or part in ("node_modules", "site-packages")
                                    for part in f.relative_to(path).parts[:-1]))  # .venv, .git, ...
    return found


def load(path: str | Path, registry: Any, connections: Any = None) -> TestFile:
    """The validated test file, with its flow loaded; FlowError with every problem otherwise
    (the flow's own problems included, at their lines)."""
    from ..compiled import Compiled
    from ..loader import load_file, tools
    from ..planner import suggest

    evaluator = tools(registry)[1]

    path = Path(path)
    file = str(path)
    problems: list[Problem] = []
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_BYTES:
            raise FlowError([Problem(file, 1, 1, "", f"larger than {MAX_BYTES:,} bytes")])
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlowError([Problem(file, 1, 1, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    except OSError as exc:
        raise FlowError([Problem(file, 1, 1, "", f"cannot read: {exc.strerror or exc}")]) from None
    data, positions, problems = yamlpos.load(text, file)
    problems = list(problems)

    def at(where: str, message: str, *, key: bool = False) -> None:
        line, col = yamlpos.position(positions, where, key=key)
        problems.append(Problem(file, line, col, where, message))

    if problems:
        raise FlowError(problems)
    if not isinstance(data, dict):
        raise FlowError([Problem(file, 1, 1, "", "a test file is a mapping with `tests:` "
                                                 "(and optionally `flow:`)")])
    for err in sorted(Compiled(SCHEMA).errors(data), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "anyOf" and err.context:  # a mock: say what is wrong with it as one mock
            from jsonschema.exceptions import best_match

            err = best_match([e for e in err.context if e.validator != "type"] or err.context)
        where = ".".join(str(p) for p in err.absolute_path)
        message, key = err.message, False
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            extra = [k for k in err.instance if k not in (err.schema.get("properties") or {})]
            known = sorted(err.schema.get("properties") or {})
            if extra:
                where, key = f"{where}.{extra[0]}" if where else str(extra[0]), True
                message = f"unknown key '{extra[0]}'{suggest(str(extra[0]), set(known))}; one of {', '.join(known)}"
        at(where, message if len(message) < 300 else message[:297] + "...", key=key)
    if problems:
        raise FlowError(problems)

    flow_name = data.get("flow") or path.name[: -len(SUFFIX)] + ".yaml"
    flow_file = (path.parent / flow_name)
    if not flow_file.is_file():
        at("flow" if "flow" in data else "", f"the flow under test, {flow_file}, does not exist"
           + ("" if "flow" in data else " (name it with `flow:`)"))
        raise FlowError(problems)
    flow = load_file(flow_file, registry=registry, connections=connections)  # its problems, at its lines

    tests: list[FlowTest] = []
    for name, spec in data["tests"].items():
        base = f"tests.{name}"
        line = yamlpos.position(positions, base, key=True)[0]
        mocks: dict[str, Any] = {}
        for action, mock in (spec.get("mocks") or {}).items():
            where = f"{base}.mocks.{action}"
            target = flow.actions.get(action)
            if target is None:
                at(where, f"no action '{action}' in {flow_file.name}{suggest(action, set(flow.actions))}", key=True)
                continue
            if target.node.is_container():
                at(where, f"'{action}' is a {target.type}: the actions inside it run, so mock those",
                   key=True)
                continue
            entries = mock if isinstance(mock, list) else [mock]
            built = []
            for i, entry in enumerate(entries):
                sub = f"{where}.{i}" if isinstance(mock, list) else where
                try:
                    one = stand_in(entry)
                except ValueError as exc:
                    at(f"{sub}.status", str(exc))
                    continue
                if one.status not in (Status.SUCCEEDED, Status.FAILED, Status.TIMEDOUT):
                    at(f"{sub}.status", f"a mock is Succeeded, Failed or TimedOut, not {one.status}")
                    continue
                built.append(one)
            mocks[action] = built if isinstance(mock, list) else (built[0] if built else None)
        _check_names(spec, flow, base, flow_file.name, at)
        expect = dict(spec.get("expect") or {})
        for key in ("status",):
            if key in expect:
                try:
                    expect[key] = Status.of(expect[key]).value
                except ValueError as exc:
                    at(f"{base}.expect.{key}", str(exc))
        actions = {}
        for action, status in (expect.get("actions") or {}).items():
            where = f"{base}.expect.actions.{action}"
            if action not in flow.actions:
                at(where, f"no action '{action}' in {flow_file.name}{suggest(action, set(flow.actions))}", key=True)
                continue
            try:
                actions[action] = Status.of(status).value
            except ValueError as exc:
                at(where, str(exc))
                continue
            if actions[action] not in (*RUN_AFTER, Status.CANCELLED):
                at(where, f"an action ends {', '.join(RUN_AFTER)} or Cancelled, not {actions[action]}")
        expect["actions"] = actions
        for i, expr in enumerate(expect.get("that") or []):
            _check_expression(expr, f"{base}.expect.that.{i}", at, evaluator)
        for expr in (expect.get("values") or {}):
            _check_expression(expr, f"{base}.expect.values.{expr}", at, evaluator, key=True)
        if "outputs" in expect:
            for out in expect["outputs"]:
                if out not in flow.outputs:
                    at(f"{base}.expect.outputs.{out}", f"the flow has no output '{out}'"
                       f"{suggest(out, set(flow.outputs))}", key=True)
        tests.append(FlowTest(name=str(name), file=file, line=line, input=spec.get("input"),
                              parameters=dict(spec.get("parameters") or {}),
                              trigger=dict(spec.get("trigger") or {}), mocks=mocks, expect=expect))
    if problems:
        raise FlowError(problems)
    return TestFile(file, flow_file, tests)


def _check_names(spec: dict, flow: Any, base: str, flow_name: str, at: Any) -> None:
    """The trigger and the parameters a test names are the flow's: a misspelt one would
    otherwise run the test as another trigger, or fail it later at line 1 of the file."""
    from ..planner import suggest

    trigger = (spec.get("trigger") or {}).get("name")
    known = set(flow.triggers) or {"manual"}  # a flow without triggers is run as "manual"
    if trigger is not None and trigger not in known:  # a string: the schema says so
        at(f"{base}.trigger.name", f"no trigger {str(trigger)[:100]!r} in {flow_name}"
           f"{suggest(str(trigger), known)}; one of {', '.join(sorted(known))}")
    for name in spec.get("parameters") or {}:
        if name not in flow.parameters:
            at(f"{base}.parameters.{name}", f"no parameter {str(name)[:100]!r} in {flow_name}"
               f"{suggest(str(name), set(flow.parameters))}", key=True)


ASSERTION_FUNCTIONS = ("run", "response")  # what assertions see besides the workflow functions


def _check_expression(expr: str, where: str, at: Any, evaluator: Any, *, key: bool = False) -> None:
    """An assertion is one expression, ``{{ ... }}``, that parses and names only known functions."""
    from ..expressions import is_template
    from ..planner import suggest

    if not isinstance(expr, str) or not is_template(expr):
        at(where, f"an assertion is an expression, {{{{ ... }}}}: {str(expr)[:60]!r} is plain text", key=key)
        return
    found = evaluator.analyze(expr)
    if found.error:
        at(where, found.error, key=key)
        return
    unknown = [n for n in found.unknown if n not in ASSERTION_FUNCTIONS]
    if unknown:
        at(where, f"unknown name '{unknown[0]}'{suggest(unknown[0], set(evaluator.known) | set(ASSERTION_FUNCTIONS))}",
           key=key)
