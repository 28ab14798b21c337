"""File → validated Flow. Either every problem is reported at once, or a whole Flow is returned.

Steps: parse YAML (libyaml, positions kept, duplicate keys refused) → JSON Schema of the flow
around its actions → each action, nested ones included: canonical type and status names
(case-insensitive, as Logic Apps), then its own node's schema (dispatch on ``type``: never a
union over every node type) → build the model → semantic checks (runAfter, cycles,
connections, expressions, node-specific checks).

Schemas are compiled once per registry and node type; a valid action is checked by the
compiled validator of ``jsonschema_rs`` when it is installed, and only an action that fails
goes through ``jsonschema`` to explain every problem in flowrun's words.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from . import definitions, firing, runtimeconfig, yamlpos
from .errors import FlowError, Problem, TriggerConfigError
from .expressions import (ACTION_FUNCTIONS, ACTION_SELF_FIELDS, LOOP_FUNCTIONS, WORKFLOW_FUNCTIONS, Evaluator,
                          templated_strings)
from .plugin import Node
from .model import STATUSES, Action, Block, Flow, Parameter, RetryPolicy, Trigger, parse_duration
from .planner import finished_before, plan_block, suggest
from .registry import Registry, default_registry
from .compiled import Compiled
from .schema import validation_schemas

_validators: dict[int, tuple["Validators", Evaluator]] = {}


class Validators:
    """The compiled schemas of a registry: the flow around its actions, one per node type
    (compiled on first use: a run of a small flow compiles only the types it uses)."""

    def __init__(self, registry: Registry):
        self._registry = registry
        self._shell: Compiled | None = None
        self._schemas: dict[str, dict] = {}
        self._nodes: dict[str, Compiled] = {}

    @property
    def shell(self) -> Compiled:
        if self._shell is None:
            shell, self._schemas = validation_schemas(self._registry)
            self._shell = Compiled(shell)
        return self._shell

    def node(self, type_name: str) -> Compiled:
        if type_name not in self._nodes:
            self.shell  # noqa: B018  builds the schemas
            self._nodes[type_name] = Compiled(self._schemas[type_name])
        return self._nodes[type_name]


def tools(registry: Registry) -> tuple[Validators, Evaluator]:
    """The schema validators and expression evaluator for a registry (built once)."""
    key = id(registry)
    if key not in _validators:
        _validators[key] = (Validators(registry), Evaluator(registry.filters))
    return _validators[key]


def load_file(path: str | Path, *, registry: Registry | None = None,
              connections: Any = None, cache: Any = None) -> Flow:
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a name of bytes that are not UTF-8: no database, log or report could hold it
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise FlowError([Problem(shown, 1, 1, "", "the file's path is not UTF-8 text: rename it")]) from None
    try:
        text = _read(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError([Problem(str(path), 1, 1, "", f"cannot read file: {exc}")]) from None
    return load_text(text, str(path), registry=registry, connections=connections, cache=cache)


MAX_FLOW_BYTES = 64 * 1024 * 1024  # a flow file larger is refused, not read


def _read(path: Path) -> str:
    """A flow file's text. Only a regular file, of at most MAX_FLOW_BYTES: a child ``flow:``
    comes from a template (a webhook's body may name it), and ``/dev/zero`` was read until
    the kernel killed the worker for its memory; a fifo blocked it for good."""
    import stat

    if not stat.S_ISREG(path.stat().st_mode):
        raise OSError(f"{path} is not a regular file")
    with open(path, "rb") as f:
        data = f.read(MAX_FLOW_BYTES + 1)
    if len(data) > MAX_FLOW_BYTES:
        raise OSError(f"{path} is larger than {MAX_FLOW_BYTES // (1024 * 1024)} MB")
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # (read_text's universal newlines)


def positions(flow: Flow) -> dict:
    """Where each path of ``flow`` stands in its file (a Logic Apps definition's: in its JSON)."""
    return definitions.positions(flow.source, flow.file)


def load_text(text: str, file: str = "<flow>", *, registry: Registry | None = None,
              connections: Any = None, cache: Any = None) -> Flow:
    """The validated Flow of ``text``, or FlowError listing every problem. Whatever the text,
    nothing else is raised: a bug of a check becomes a problem line naming it (the fuzz tests in
    tests/engine/test_loader_fuzz.py make sure none is left). With ``cache`` (an
    ``engine.flowcache.FlowCache``), a text validated before is rebuilt without re-checking."""
    try:
        return _load_text(text, file, registry or default_registry(), connections, cache)
    except FlowError:
        raise
    except (Exception, RecursionError) as exc:  # noqa: BLE001  never a traceback for a file
        raise FlowError([Problem(file, 1, 1, "", f"internal error while checking this file "
                                                 f"({type(exc).__name__}: {str(exc)[:200]}); please report it")]) from None


def _load_text(text: str, file: str, registry: Registry, connections: Any, cache: Any) -> Flow:
    # a JSON file may be a Logic Apps definition, which reads files beside it: never cached
    key = cache.key(text, file, registry, connections) if cache is not None and not definitions.is_json(text) else None
    if key is not None:
        cached = cache.get(key)
        if isinstance(cached, dict):
            found: list[str] = []
            flow = _build(cached, file, text, registry, lambda path, message: found.append(message))
            if not found:
                flow.warnings = _warnings(flow, file, None)
                return flow
    data, places, problems, definition = definitions.parse(text, file)

    def problem(path: str, message: str, at: tuple[str, int] | None = None) -> None:
        line, col = yamlpos.position(places, path, key=message.startswith(("unknown key", "duplicate")))
        if at is not None and path in places:  # (the string, the offset in it) of an `@` expression
            line, col = yamlpos.inside(text, (line, col), *at)
        problems.append(Problem(file, line, col, path, message))

    if data is None and not problems:
        problem("", "the file is empty; a flow needs at least 'actions'")
    elif data is not None and not isinstance(data, dict):
        problem("", f"a flow must be a mapping with 'actions', not {type(data).__name__}")
    if data is None or not isinstance(data, dict):
        raise FlowError(problems)

    validators, evaluator = tools(registry)
    _canonical_triggers(data.get("triggers"), registry)
    for err in validators.shell.errors(data):
        for path, message in _explain(err):
            problem(path, message)
    _validate_actions(data.get("actions"), "actions", registry, validators, problem)
    # the model is built even from a flow with schema problems (bad parts are left out),
    # so the semantic problems are reported in the same pass
    schema_problems = [p.path for p in problems]
    flow = _build(data, file, text, registry, problem)
    if definition is not None:
        flow.app_settings = definition.app_settings
    _check(flow, registry, evaluator, connections, problem)
    for trigger in flow.triggers.values():  # what the schema let through: the trigger's own rules
        where = f"triggers.{trigger.name}"
        if not any(p == where or p.startswith(where + ".") for p in schema_problems):
            _check_trigger_definition(trigger, registry, problem)
    if problems:
        raise FlowError(_sorted(problems))
    flow.warnings = _warnings(flow, file, places)
    if key is not None:
        cache.put(key, data, connections)
    return flow


def _warnings(flow: Flow, file: str, positions: Any) -> list[Problem]:
    """What each node's ``warnings`` says about its actions, positioned like problems (a flow
    from the cache has no positions: the text is parsed again only if there is a warning)."""
    out = []
    for action in flow.actions.values():
        try:
            found = action.node.warnings(action.raw)
        except (AttributeError, TypeError, KeyError, ValueError):
            found = []
        for sub, message in found:
            if positions is None:
                positions = definitions.positions(flow.source, file)
            path = f"{action.where}.{sub}" if sub else action.where
            line, col = yamlpos.position(positions, path)
            out.append(Problem(file, line, col, path, message))
    return _sorted(out)


# -- canonical names, and each action against its own node's schema --------------------------
def _canonical_triggers(triggers: Any, registry: Registry) -> None:
    if not isinstance(triggers, dict):
        return
    for trigger in triggers.values():
        if isinstance(trigger, dict) and isinstance(trigger.get("type"), str):
            cls = registry.trigger(trigger["type"])
            if cls is not None:
                trigger["type"] = cls.type


def _canonical_statuses(action: dict) -> None:
    run_after = action.get("runAfter")
    if isinstance(run_after, dict):
        for pred, statuses in run_after.items():
            if isinstance(statuses, list):
                run_after[pred] = [_STATUS_BY_LOWER.get(st.lower(), st) if isinstance(st, str) else st
                                   for st in statuses]


_STATUS_BY_LOWER = {str(s).lower(): s for s in STATUSES}


def _validate_actions(actions: Any, where: str, registry: Registry, validators: Validators, problem: Any) -> None:
    """Canonicalise and validate every action of a block, then the blocks nested in them."""
    if not isinstance(actions, dict):
        return  # the enclosing schema says why
    for name, action in actions.items():
        a_where = f"{where}.{name}"
        if not isinstance(action, dict):
            continue  # the enclosing schema says why
        if "type" not in action:
            problem(a_where, "'type' is required")
            continue
        type_name = action["type"]
        node = registry.node(type_name) if isinstance(type_name, str) else None
        if node is None:
            known = registry.type_names()
            problem(f"{a_where}.type", definitions.unsupported(type_name) or
                    f"unknown action type {_quoted(type_name)}{suggest(str(type_name), known)}")
            continue
        action["type"] = node.type
        _canonical_statuses(action)
        for err in validators.node(node.type).errors(action):
            for path, message in _explain(err):
                problem(f"{a_where}.{path}" if path else a_where, message)
        try:
            nested = node.blocks(action)
        except (AttributeError, TypeError, KeyError):
            continue  # malformed; the schema says why
        for key, block in nested.items():
            _validate_actions(block, f"{a_where}.{_block_where(key)}", registry, validators, problem)


def _quoted(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else f"{value!r} (a {type(value).__name__}, not a name)"


# -- schema errors → one line each ----------------------------------------------------------
def _explain(err: Any) -> list[tuple[str, str]]:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "anyOf" and err.context:
        # a templatable value: explain the non-template branch
        branch = [e for e in err.context if e.schema_path and e.schema_path[0] == 0]
        if branch:
            deepest = max(branch, key=lambda e: len(e.absolute_path))
            return _explain(deepest)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        out = []
        for key in err.instance:
            if key not in allowed:
                out.append((f"{path}.{key}" if path else str(key),
                            f"unknown key '{key}'{suggest(str(key), allowed)}"))
        return out
    if err.validator == "enum" and path.endswith("type") and isinstance(err.instance, str) \
            and err.absolute_path and len(err.absolute_path) >= 2:
        what = "trigger" if err.absolute_path[0] == "triggers" else "action"
        return [(path, definitions.unsupported(err.instance) or
                 f"unknown {what} type '{err.instance}'{suggest(err.instance, err.validator_value)}")]
    if err.validator == "propertyNames":
        return [(path, f"invalid name {err.instance!r}: use letters, digits, '_' or '-' (at most 80)")]
    if err.validator == "pattern" and err.schema.get("description", "").startswith("ISO-8601"):
        return [(path, f"{err.instance!r} is not an ISO-8601 duration such as PT30S")]
    if err.validator == "required":
        return [(path, err.message.replace("is a required property", "is required"))]
    return [(path, err.message)]


def _sorted(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in sorted(problems, key=lambda p: (p.line, p.column, p.path)):
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out


# -- model ------------------------------------------------------------------------------------
def _build(data: dict, file: str, text: str, registry: Registry, problem: Any) -> Flow:
    all_actions: dict[str, Action] = {}

    def block(key: str, actions: dict, where: str, owner: Action | None) -> Block:
        b = Block(key=key, actions={}, owner=owner)
        for name, raw in (actions if isinstance(actions, dict) else {}).items():
            a_where = f"{where}.{name}"
            if not isinstance(raw, dict):
                continue
            node = registry.node(raw.get("type", "")) or Node  # unknown types: reported by the schema
            limit = raw.get("limit") if isinstance(raw.get("limit"), dict) else {}
            timeout_text = raw.get("timeout") or limit.get("timeout")
            timeout, retry = None, RetryPolicy()
            try:
                if isinstance(timeout_text, str) and not node.owns_limit:
                    timeout = parse_duration(timeout_text)
            except ValueError as exc:
                problem(f"{a_where}.{'timeout' if raw.get('timeout') else 'limit.timeout'}", str(exc))
            policy, policy_where = raw.get("retryPolicy"), "retryPolicy"
            if policy is None and isinstance(raw.get("inputs"), dict) and "retryPolicy" in raw["inputs"]:
                policy, policy_where = raw["inputs"]["retryPolicy"], "inputs.retryPolicy"  # Logic Apps' Http
            try:
                retry = RetryPolicy.from_dict(policy if isinstance(policy, dict) else None)
            except (ValueError, TypeError, KeyError) as exc:
                problem(f"{a_where}.{policy_where}", str(exc))
            run_after = raw.get("runAfter") if isinstance(raw.get("runAfter"), dict) else {}
            action = Action(name=name, type=getattr(node, "type", "?"), node=node, raw=raw, inputs=raw.get("inputs"),
                            run_after={k: tuple(v) if isinstance(v, list) else () for k, v in run_after.items()},
                            retry=retry, timeout=timeout, connection=raw.get("connection"),
                            where=a_where, parent=owner, block=b)
            if name in all_actions:
                problem(f"{a_where}", f"duplicate action name '{name}' (also at "
                                      f"{all_actions[name].where}); names must be unique in a flow")
            all_actions[name] = action
            b.actions[name] = action
            try:
                nested = node.blocks(raw)
            except (AttributeError, TypeError):
                nested = {}
            for sub_key, sub_actions in nested.items():
                action.blocks[sub_key] = block(sub_key, sub_actions, f"{a_where}.{_block_where(sub_key)}", action)
        for p in plan_block(b, all_actions):
            problem(*p)
        return b

    root = block("", data.get("actions") or {}, "actions", None)
    params = {}
    declared = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    for name, p in declared.items():
        if not isinstance(p, dict):
            continue
        has_default = "defaultValue" in p or "default" in p
        params[name] = Parameter(name, str(p.get("type", "string")), p.get("defaultValue", p.get("default")), has_default,
                                 p.get("allowedValues"), p.get("description", ""))
    triggers_raw = data.get("triggers") if isinstance(data.get("triggers"), dict) else {}
    triggers = {n: Trigger(n, str(t.get("type")), t) for n, t in triggers_raw.items() if isinstance(t, dict)}
    name = data.get("name") if isinstance(data.get("name"), str) else Path(file).stem
    outputs = data.get("outputs") if isinstance(data.get("outputs"), dict) else {}
    return Flow(name=name, description=str(data.get("description", "")), parameters=params,
                triggers=triggers, root=root, outputs=outputs, actions=all_actions,
                file=file, source=text, hash=hashlib.sha256(text.encode()).hexdigest(), raw=data)


def _block_where(key: str) -> str:
    """Block key → its dotted place in the file ("case:gold" → cases.gold.actions)."""
    if key.startswith("case:"):
        return f"cases.{key[5:]}.actions"
    if key in ("else", "default"):
        return f"{key}.actions"
    return key


# -- semantic checks --------------------------------------------------------------------------
def _check(flow: Flow, registry: Registry, evaluator: Evaluator, connections: Any, problem: Any) -> None:
    variables = {name for a in flow.actions.values() if a.node.declares_variables
                 for name in _safe(a.node.declared_variables, a.raw)}
    declarers = " or ".join(sorted(n.type for n in registry.nodes.values() if n.declares_variables)) \
        or "an action that declares variables"
    for action in flow.actions.values():
        node = action.node
        try:
            node_problems = node.check(action.raw)
        except (AttributeError, TypeError, KeyError):
            node_problems = []  # malformed; the schema has said why
        for sub, message in node_problems + runtimeconfig.check(action.raw, flow.raw.get("staticResults")):
            problem(f"{action.where}.{sub}" if sub else action.where, message)
        if node.placement == "top-level" and action.parent is not None:
            problem(action.where, f"{action.type} is only allowed at the top level of a flow")
        elif node.placement == "outside-loops" and any(a.node.loops for a in action.ancestors()):
            loop = next(a for a in action.ancestors() if a.node.loops)
            problem(action.where, f"{action.type} is not allowed inside a loop ({loop.type} '{loop.name}')")
        _check_connection(action, registry, connections, problem)
        _check_sdk(action, registry, problem)
        # trackedProperties are evaluated once the action has finished: they may read action()
        # (its own result) and the action's own outputs; no other field may call action()
        templated = {k: v for k, v in action.raw.items() if k not in node.nested}
        for sub, text in templated_strings(templated):
            where = f"{action.where}.{sub}"
            found = evaluator.analyze(text)
            if found.error:
                problem(where, found.error, _at(text, found))
                continue
            for name in found.unknown:
                problem(where, f"unknown name '{name}'{evaluator.suggest_name(name)}")
            tracked = sub.split(".", 1)[0] in ACTION_SELF_FIELDS
            if not tracked and _calls_action(text, found):
                problem(where, "action() is only available in trackedProperties (the action's own result, "
                               "once it has finished); read another action with actions('name')")
            for fn, arg in found.calls:
                if tracked and fn in ACTION_FUNCTIONS and arg == action.name:
                    continue  # its own result: finished by the time trackedProperties are evaluated
                _check_reference(flow, action, sub, fn, arg, variables, problem, where, declarers)
    for trigger in flow.triggers.values():
        _check_trigger_connection(trigger, registry, connections, problem)
        _check_firing(trigger, registry, evaluator, problem)
    key = (flow.raw.get("concurrency") or {}).get("key") if isinstance(flow.raw.get("concurrency"), dict) else None
    if isinstance(key, str):  # evaluated on the trigger when a run starts: only trigger and parameters
        found = evaluator.analyze(key)
        if found.error:
            problem("concurrency.key", found.error)
        for name in found.unknown:
            problem("concurrency.key", f"unknown name '{name}'{suggest(name, evaluator.known)}")
        for fn, arg in found.calls:
            if fn in ACTION_FUNCTIONS:
                problem("concurrency.key", f"{fn}() is not available in a concurrency key: it is evaluated on "
                                           "the trigger, before any action runs")
            elif fn == "parameters" and arg not in flow.parameters:
                problem("concurrency.key", f"unknown parameter '{arg}'{suggest(arg, flow.parameters)}")
    for name, out in flow.outputs.items():
        if not isinstance(out, dict):
            continue
        for sub, text in templated_strings(out.get("value"), "value"):
            found = evaluator.analyze(text)
            if found.error:
                problem(f"outputs.{name}.{sub}", found.error, _at(text, found))
            if not found.error and _calls_action(text, found):
                problem(f"outputs.{name}.{sub}", "action() is only available in an action's trackedProperties")
            for fn, arg in found.calls:
                if fn in ACTION_FUNCTIONS and arg not in flow.actions:
                    problem(f"outputs.{name}.{sub}", f"unknown action '{arg}'{suggest(arg, flow.actions)}")


_JINJA_ACTION_CALL = re.compile(r"(?<![\w.])action\s*\(")


def _calls_action(text: str, found: Any) -> bool:
    """``text`` calls action() (a WDL expression's calls list it; Jinja's are looked for)."""
    if found.language == "wdl":
        return any(fn.lower() == "action" for fn, _ in found.calls)
    return bool(_JINJA_ACTION_CALL.search(text))


def _at(text: str, found: Any) -> tuple[str, int] | None:
    return (text, found.offset) if found.offset is not None else None


def _check_connection(action: Action, registry: Registry, connections: Any, problem: Any) -> None:
    kinds = action.node.connection_kinds()
    if kinds and not action.connection and not getattr(action.node, "connection_optional", False):
        problem(action.where, f"'{action.type}' needs a connection of kind {_kinds(kinds)} (add connection: NAME)")
        return
    if action.connection and connections is not None:
        _check_named_connection(f"{action.where}.connection", action.connection, kinds, f"'{action.type}'",
                                connections, problem)
    key = action.node.more_connections
    inputs = action.raw.get("inputs")
    listed = inputs.get(key) if key and isinstance(inputs, dict) else None
    if listed is None:
        return
    where = f"{action.where}.inputs.{key}"
    names = [listed] if isinstance(listed, str) else listed
    if not isinstance(names, list) or not all(isinstance(n, str) and "{{" not in n and "{%" not in n
                                              for n in names):
        problem(where, "list connection names as written text: they are resolved before the run starts")
        return
    for i, name in enumerate(names):
        if name == action.connection or names.index(name) != i:
            problem(where, f"connection '{name}' is listed twice")
        elif connections is not None:
            _check_named_connection(where, name, kinds, f"'{action.type}'", connections, problem)


def _kinds(kinds: tuple[str, ...]) -> str:
    return " or ".join(f"'{k}'" for k in kinds)


def _check_trigger_connection(trigger: Trigger, registry: Registry, connections: Any, problem: Any) -> None:
    """A trigger that reads from a vendor (a queue, a stream) names a connection of its kind."""
    kind = getattr(registry.trigger(trigger.type), "connection", None)
    name = trigger.raw.get("connection")
    if not kind or not isinstance(name, str) or connections is None:
        return  # a missing or non-string name: the schema has said why
    if _check_named_connection(f"triggers.{trigger.name}.connection", name, kind, f"trigger '{trigger.type}'",
                               connections, problem):
        _check_vendor_sdk(f"triggers.{trigger.name}", kind, trigger.type, registry, problem)


def _check_named_connection(where: str, name: str, kind: str | tuple[str, ...] | None, who: str,
                            connections: Any, problem: Any) -> bool:
    """``name`` is a connection of ``connections`` of ``kind`` (any kind when None, one of them
    when a tuple); True if so."""
    conn = connections.specs.get(name)
    if conn is None:
        problem(where, f"unknown connection '{name}'{suggest(name, connections.specs)} in {connections.file}")
        return False
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    if kinds and conn["kind"] not in kinds:
        problem(where, f"connection '{name}' is of kind '{conn['kind']}', {who} needs {_kinds(kinds)}")
        return False
    return True


_FIRING_FUNCTIONS = frozenset({"trigger", "triggers", "triggerbody", "triggeroutputs"})


def _check_firing(trigger: Trigger, registry: Registry, evaluator: Evaluator, problem: Any) -> None:
    """A trigger's conditions and splitOn (``engine.firing``): expressions that read only the
    firing, on a trigger that serves HTTP requests (where flowrun evaluates them)."""
    where = f"triggers.{trigger.name}"
    for sub, message in firing.check(trigger.raw):
        problem(f"{where}.{sub}", message)
    fields = {k: trigger.raw[k] for k in ("conditions", "splitOn") if k in trigger.raw}
    mode = getattr(registry.trigger(trigger.type), "mode", None)
    if fields and mode not in (None, "push"):
        problem(f"{where}.{next(iter(fields))}", f"{' and '.join(fields)} are evaluated on HTTP (Request) triggers "
                                                 f"only; a {trigger.type} trigger cannot use them in flowrun")
    for sub, text in templated_strings(fields):
        found = evaluator.analyze(text)
        if found.error:
            problem(f"{where}.{sub}", found.error, _at(text, found))
            continue
        for name in found.unknown:
            problem(f"{where}.{sub}", f"unknown name '{name}'{evaluator.suggest_name(name)}")
        used = {fn for fn, _ in found.calls} | ({"action"} if _calls_action(text, found) else set())
        for fn in sorted(used):
            if fn in WORKFLOW_FUNCTIONS and fn.lower() not in _FIRING_FUNCTIONS:
                problem(f"{where}.{sub}", f"{fn}() is not available here: a trigger's {sub.split('.')[0]} reads "
                                          f"only the firing (trigger(), triggerBody(), triggerOutputs())")


def _check_trigger_definition(trigger: Trigger, registry: Registry, problem: Any) -> None:
    """What the trigger's own class says of its definition beyond the schema (``TriggerConfigError``
    from its constructor, which does no I/O): the same problems ``flowrun serve`` would refuse."""
    cls = registry.trigger(trigger.type)
    if cls is None:
        return  # the schema has said why
    try:
        cls(trigger.raw, None)
    except TriggerConfigError as exc:
        where = f"triggers.{trigger.name}"
        for sub, message in exc.problems:
            problem(f"{where}.{sub}" if sub else where, message)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError):
        pass  # malformed: the schema has said why


def _check_sdk(action: Action, registry: Registry, problem: Any) -> None:
    for kind in action.node.connection_kinds()[:1]:  # one message: the kinds of a node share its SDK
        _check_vendor_sdk(action.where, kind, action.node.type, registry, problem)


def _check_vendor_sdk(where: str, kind: str, type_name: str, registry: Registry, problem: Any) -> None:
    """A node or trigger whose vendor SDK is not installed: say which extra installs it (never imports it)."""
    vendor = getattr(registry.connections.get(kind), "vendor", None)
    message = vendor.missing_sdk(type_name) if vendor is not None else None
    if message:
        problem(where, message)


def _check_reference(flow: Flow, action: Action, sub: str, fn: str, arg: str, variables: set,
                     problem: Any, where: str, declarers: str = "") -> None:
    if fn in ACTION_FUNCTIONS:
        target = flow.actions.get(arg)
        if target is None:
            problem(where, f"unknown action '{arg}'{suggest(arg, flow.actions)}")
        elif target is action and not _after_block(action, sub):
            problem(where, f"'{action.name}' cannot read its own result")
        elif not finished_before(target, action, inside_ok=_after_block(action, sub)):
            problem(where, f"'{arg}' is not guaranteed to have finished before '{action.name}' runs; "
                           f"add it (or an action after it) to runAfter")
    elif fn in LOOP_FUNCTIONS:
        loops = [a.name for a in action.ancestors() if a.node.loops]
        if action.node.loops and _after_block(action, sub):
            loops.append(action.name)
        if arg not in loops:
            problem(where, f"'{arg}' is not a loop around '{action.name}'"
                           + (f"; enclosing loops: {', '.join(loops)}" if loops else ""))
    elif fn == "variables" and arg not in variables:
        problem(where, f"unknown variable '{arg}'{suggest(arg, variables)} (declare it with {declarers})")
    elif fn == "parameters" and arg not in flow.parameters:
        problem(where, f"unknown parameter '{arg}'{suggest(arg, flow.parameters)}")


def _after_block(action: Action, sub: str) -> bool:
    """Whether ``sub`` (a field of ``action``) is evaluated after the action's own block ran."""
    return sub.split(".", 1)[0].split("[", 1)[0] in action.node.after_block


def _safe(fn: Any, raw: dict) -> list:
    try:
        return list(fn(raw))
    except (AttributeError, TypeError, KeyError):
        return []  # malformed; the schema has said why
