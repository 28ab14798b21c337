"""ARM template expressions, the small part a Logic Apps workflow resource needs offline.

In a Consumption ARM template, a string written ``"[...]"`` is an ARM (deployment-time)
expression, resolved before the workflow exists; ``"[[...]"`` is the literal ``"[..."``.
``Arm.resolve`` evaluates ``parameters('x')`` (the values ``arm_parameter_values`` reads from
``--arm-parameters FILE`` over the template's ``defaultValue``s), ``variables('x')``,
``concat()``, ``string()``, ``toLower()``, ``toUpper()``, string and number literals,
``true``/``false`` and ``.x`` / ``['x']`` / ``[0]`` steps. Anything else (``resourceGroup()``,
``listKeys()``...) cannot be known offline: one problem at its string, asking for the value.
Nesting is bounded (64, counting the variables one refers through), a variable is resolved once
(variables doubling each other stay linear), what ``concat()`` builds is bounded (``MAX_TEXT``),
and a variable that refers to itself is a problem, not a loop.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import safejson

MAX_TEXT = 1_000_000  # characters one ARM value may be built to


def arm_parameter_values(template: dict, parameters_file: str | None, problem: Any) -> dict:
    declared = template.get("parameters") if isinstance(template.get("parameters"), dict) else {}
    values = {k: v["defaultValue"] for k, v in declared.items() if isinstance(v, dict) and "defaultValue" in v}
    if parameters_file:
        try:
            given = safejson.loads(Path(parameters_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem("", f"cannot read the ARM parameters file {parameters_file}: {exc}")
            given = {}
        given = given.get("parameters", given) if isinstance(given, dict) else {}
        for k, v in (given if isinstance(given, dict) else {}).items():
            if isinstance(v, dict) and "value" in v:
                values[k] = v["value"]
            elif isinstance(v, dict) and "reference" in v:
                problem("", f"ARM parameter '{k}' in {parameters_file} is a Key Vault reference, which "
                            f"flowrun cannot resolve offline; give its value")
    return {k.lower(): v for k, v in values.items()}


class Arm:
    """The small part of ARM's template language a workflow resource needs offline."""

    _TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w]*)"
                        r"|(?P<op>[()\[\],.]))")

    def __init__(self, parameters: dict, variables: dict, problem: Any):
        self.parameters, self.variables, self.problem = parameters, variables, problem
        self._resolving: set[str] = set()
        self._resolved: dict[str, Any] = {}
        self._depth = 0

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}.{i}") for i, v in enumerate(value)]
        if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
            if value.startswith("[["):
                return value[1:]
            try:
                return self.evaluate(value[1:-1])
            except ValueError as exc:
                self.problem(where, f"ARM expression {value[:80]!r}: {exc}")
                return None
        return value

    def evaluate(self, text: str) -> Any:
        tokens, at = [], 0
        while at < len(text):
            if text[at].isspace():
                at += 1
                continue
            m = self._TOKEN.match(text, at)
            if m is None or m.end() == at:
                raise ValueError(f"cannot parse it at character {at + 1}")
            tokens.append((m.lastgroup, m.group(m.lastgroup)))
            at = m.end()
        saved = getattr(self, "_tokens", None), getattr(self, "_at", 0)  # variables() evaluates inside
        self._tokens, self._at = tokens, 0  # _depth goes on counting through variables()
        try:
            value = self._expr()
            if self._at != len(tokens):
                raise ValueError("cannot parse it")
            return value
        finally:
            self._tokens, self._at = saved

    def _next(self) -> tuple[str, str]:
        if self._at >= len(self._tokens):
            raise ValueError("it ends too early")
        self._at += 1
        return self._tokens[self._at - 1]

    def _peek(self) -> str | None:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else None

    def _expr(self) -> Any:
        self._depth += 1
        try:
            if self._depth > 64:
                raise ValueError("nested too deeply")
            return self._value()
        finally:
            self._depth -= 1

    def _value(self) -> Any:
        kind, text = self._next()
        if kind == "str":
            value: Any = text[1:-1].replace("''", "'")
        elif kind == "num":
            value = float(text) if "." in text else int(text)
        elif kind == "name":
            if text.lower() in ("true", "false") and self._peek() != "(":
                return text.lower() == "true"
            if self._next()[1] != "(":
                raise ValueError(f"expected '(' after {text}")
            args = []
            while self._peek() != ")":
                args.append(self._expr())
                if self._peek() == ",":
                    self._next()
            self._next()
            value = self._call(text, args)
        else:
            raise ValueError(f"unexpected {text!r}")
        while self._peek() in (".", "["):
            if self._next()[1] == ".":
                key: Any = self._next()[1]
            else:
                key = self._expr()
                if self._next()[1] != "]":
                    raise ValueError("expected ']'")
            value = _step(value, key)
        return value

    def _call(self, name: str, args: list) -> Any:
        fn = name.lower()
        if fn == "parameters" and len(args) == 1 and isinstance(args[0], str):
            if args[0].lower() not in self.parameters:
                raise ValueError(f"parameter '{args[0]}' has no value (no defaultValue in the template "
                                 f"and none in --arm-parameters)")
            return self.parameters[args[0].lower()]
        if fn == "variables" and len(args) == 1 and isinstance(args[0], str):
            found = {k.lower(): (k, v) for k, v in self.variables.items()}.get(args[0].lower())
            if found is None or found[0] in self._resolving:
                raise ValueError(f"unknown variable '{args[0]}'")
            if found[0] in self._resolved:
                return self._resolved[found[0]]
            self._resolving.add(found[0])
            try:
                value = found[1]
                value = self.evaluate(value[1:-1]) if isinstance(value, str) and value.startswith("[") \
                    and value.endswith("]") and not value.startswith("[[") else value
            finally:
                self._resolving.discard(found[0])
            self._resolved[found[0]] = value
            return value
        if fn == "concat":
            if all(isinstance(a, list) for a in args):
                if sum(len(a) for a in args) > MAX_TEXT // 8:
                    raise ValueError(f"concat() would build an array longer than {MAX_TEXT // 8:,} items")
                return [x for a in args for x in a]
            parts = [a if isinstance(a, str) else _text(a) for a in args]
            if sum(len(p) for p in parts) > MAX_TEXT:
                raise ValueError(f"concat() would build a text longer than {MAX_TEXT:,} characters")
            return "".join(parts)
        if fn in ("tolower", "toupper") and len(args) == 1 and isinstance(args[0], str):
            return args[0].lower() if fn == "tolower" else args[0].upper()
        if fn == "string" and len(args) == 1:
            return args[0] if isinstance(args[0], str) else _text(args[0])
        raise ValueError(f"{name}() cannot be resolved offline (flowrun resolves parameters(), variables(), "
                         f"concat(), string(), toLower() and toUpper()); give the value instead")


def _text(value: Any) -> str:
    """JSON text, written piece by piece and stopped past MAX_TEXT (an array concat() built can
    hold the same large parameter value many times)."""
    out, size = [], 0
    for chunk in json.JSONEncoder().iterencode(value):
        size += len(chunk)
        if size > MAX_TEXT:
            raise ValueError(f"a value longer than {MAX_TEXT:,} characters as text")
        out.append(chunk)
    return "".join(out)


def _step(value: Any, key: Any) -> Any:
    if isinstance(value, dict) and isinstance(key, str):
        found = {k.lower(): v for k, v in value.items()}
        if key.lower() in found:
            return found[key.lower()]
    if isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
        return value[key]
    raise ValueError(f"no property {key!r}")
