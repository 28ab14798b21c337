"""``flowrun convert``: a Logic Apps definition as the equivalent flowrun YAML.

Field and type names are kept, and so are ``@`` expressions (flowrun runs them as they are).
With ``to_jinja``, an expression with an exact Jinja equivalent is rewritten: a workflow
function of literal arguments (``triggerBody()``, ``body('Get')``, ``variables('n')``,
``parameters('p')``, ``items('Loop')``...) followed by plain ``['name']`` / ``.name`` / ``[0]``
steps, whole (``@body('Get')['id']`` → ``{{ body('Get')['id'] }}``) or interpolated
(``@{...}``). Anything else (other functions, whose typing rules differ, and ``?`` steps,
whose null-safety Jinja does not have) stays WDL. A ``# flowrun:`` comment marks each place
that has no flowrun equivalent or that flowrun fills in (the Request trigger's SAS ``auth``).
"""
from __future__ import annotations

import json
import re
from typing import Any

from . import definitions
from .errors import FlowError

HEADER = "# yaml-language-server: $schema=https://flowrun.dev/schemas/flow.schema.json\n"
_JINJA_FUNCTIONS = ("triggerBody", "triggerOutputs", "trigger", "body", "outputs", "actions", "variables",
                    "parameters", "item", "items", "iterationIndexes", "result", "workflow")
_ARG = r"(?:'(?:[^'{}\\]|'')*')?"
_STEP = r"(?:\[(?:'(?:[^'{}\\]|'')*'|\d+)\]|\.[A-Za-z_][A-Za-z0-9_]*)"
_SIMPLE = re.compile(rf"^(?P<fn>{'|'.join(_JINJA_FUNCTIONS)})\((?P<arg>{_ARG})\)(?P<steps>{_STEP}*)$")
_INTERPOLATION = re.compile(r"@\{([^{}]*)\}")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ./()-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def convert(text: str, file: str, *, to_jinja: bool = False) -> str:
    """The flowrun YAML of the definition ``text``; FlowError if it is not one (or is broken)."""
    data, _, problems, definition = definitions.parse(text, file)
    if problems:
        raise FlowError(problems)
    if definition is None:
        from .errors import Problem

        raise FlowError([Problem(file, 1, 1, "", "not a Logic Apps definition (a workflow.json, a definition "
                                                 "with $schema .../workflowdefinition.json, or an ARM template)")])
    notes: dict[str, str] = {}
    _annotate(data, notes)
    data.pop("$schema", None)
    data = {"name": data.pop("name"), **data}
    body = _Emitter(notes, to_jinja).document(data)
    source = {"workflow.json": "a Standard workflow.json", "definition": "a Logic Apps definition",
              "arm": "a Consumption ARM template"}[definition.shape]
    return f"{HEADER}# converted by flowrun convert from {source}: {file}\n{body}"


def _annotate(data: dict, notes: dict[str, str]) -> None:
    for name, trigger in (data.get("triggers") or {}).items():
        if not isinstance(trigger, dict):
            continue
        why = definitions.unsupported(trigger.get("type"))
        if why:
            notes[f"triggers.{name}"] = f"no flowrun equivalent: {why}"
        elif trigger.get("auth") == {"type": "sas"}:
            notes[f"triggers.{name}.auth"] = ("Logic Apps' SAS callback URL (flowrun serve prints it); "
                                              "or key/hmac with a connection")
        if "splitOn" in trigger:
            notes[f"triggers.{name}.splitOn"] = ("one run per item; the caller gets 202 with the run ids "
                                                 "(a Response cannot answer it), as in Logic Apps")
    _annotate_actions(data.get("actions"), "actions", notes)


_IGNORED_OPTIONS = {"disableasyncpattern": "flowrun's Http never follows the async 202 pattern anyway",
                    "suppressworkflowheaders": "flowrun sends no workflow headers anyway",
                    "suppressworkflowheadersonresponse": "flowrun sends no workflow headers anyway"}


def _annotate_actions(actions: Any, where: str, notes: dict[str, str]) -> None:
    if not isinstance(actions, dict):
        return
    for name, action in actions.items():
        if not isinstance(action, dict):
            continue
        path = f"{where}.{name}"
        why = definitions.unsupported(action.get("type"))
        if why:
            notes[path] = f"no flowrun equivalent: {why}"
        if "trackedProperties" in action:
            notes[f"{path}.trackedProperties"] = ("evaluated after the action and stored with its step "
                                                  "(flowrun show); flowrun sends no diagnostics events")
        option = str(action.get("operationOptions", "")).lower()
        if option in _IGNORED_OPTIONS:
            notes[f"{path}.operationOptions"] = f"no effect: {_IGNORED_OPTIONS[option]}"
        for key, block in (("actions", action.get("actions")), ("else.actions", (action.get("else") or {}).get("actions")
                                                                 if isinstance(action.get("else"), dict) else None),
                           ("default.actions", (action.get("default") or {}).get("actions")
                            if isinstance(action.get("default"), dict) else None)):
            _annotate_actions(block, f"{path}.{key}", notes)
        for case_name, case in (action.get("cases") or {}).items() if isinstance(action.get("cases"), dict) else ():
            if isinstance(case, dict):
                _annotate_actions(case.get("actions"), f"{path}.cases.{case_name}.actions", notes)


def jinja(value: str) -> str | None:
    """The exact Jinja equivalent of a WDL string, or None when it has none."""
    if value.startswith("@@") or "{{" in value or "{%" in value:
        return None
    if value.startswith("@") and not value.startswith("@{"):
        inner = _expression(value[1:])
        return None if inner is None else "{{ " + inner + " }}"
    if "@{" not in value:
        return None
    out, last = [], 0
    for m in _INTERPOLATION.finditer(value):
        inner = _expression(m.group(1))
        if inner is None:
            return None
        out.append(value[last:m.start()].replace("@@{", "@{"))
        out.append("{{ " + inner + " }}")
        last = m.end()
    rest = value[last:]
    if "@{" in rest.replace("@@{", ""):
        return None
    out.append(rest.replace("@@{", "@{"))
    return "".join(out)


def _expression(text: str) -> str | None:
    m = _SIMPLE.match(text.strip())
    if m is None:
        return None
    arg, steps = m.group("arg"), m.group("steps")
    arg_text = json.dumps(arg[1:-1].replace("''", "'")) if arg else ""
    steps = re.sub(r"\['((?:[^']|'')*)'\]", lambda s: "[" + json.dumps(s.group(1).replace("''", "'")) + "]", steps)
    return f"{m.group('fn')}({arg_text}){steps}"


class _Emitter:
    """Block-style YAML with comments by path; strings quoted unless plainly safe."""

    def __init__(self, notes: dict[str, str], to_jinja: bool):
        self.notes, self.to_jinja, self.lines = notes, to_jinja, []

    def document(self, data: dict) -> str:
        self.mapping(data, "", 0)
        return "\n".join(self.lines) + "\n"

    def scalar(self, value: Any) -> str:
        if isinstance(value, str):
            if self.to_jinja:
                value = jinja(value) or value
            if _PLAIN.match(value) and value.lower() not in _YAML_WORDS and not value[-1:] in (" ", ".") \
                    and not re.match(r"^[\d.+-]", value):
                return value
            return json.dumps(value, ensure_ascii=False)
        return json.dumps(value, ensure_ascii=False)

    def key(self, key: str) -> str:
        return key if _PLAIN.match(key) and key.lower() not in _YAML_WORDS and " " not in key \
            else json.dumps(key, ensure_ascii=False)

    def mapping(self, data: dict, path: str, indent: int) -> None:
        pad = "  " * indent
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            if sub in self.notes:
                self.lines.append(f"{pad}# flowrun: {self.notes[sub]}")
            self.entry(f"{pad}{self.key(str(k))}:", v, sub, indent)

    def entry(self, head: str, v: Any, path: str, indent: int) -> None:
        if isinstance(v, dict) and v:
            self.lines.append(head)
            self.mapping(v, path, indent + 1)
        elif isinstance(v, list) and v:
            self.lines.append(head)
            pad = "  " * (indent + 1)
            for i, item in enumerate(v):
                if isinstance(item, dict) and item:
                    self.lines.append(f"{pad}-")
                    self.mapping(item, f"{path}.{i}", indent + 2)
                elif isinstance(item, list) and item:
                    self.entry(f"{pad}-", item, f"{path}.{i}", indent + 1)
                else:
                    self.lines.append(f"{pad}- {self.empty_or_scalar(item)}")
        else:
            self.lines.append(f"{head} {self.empty_or_scalar(v)}")

    def empty_or_scalar(self, v: Any) -> str:
        if isinstance(v, dict):
            return "{}"
        if isinstance(v, list):
            return "[]"
        return self.scalar(v)
