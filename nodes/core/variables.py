"""Run variables: declared once at the top level, then set, incremented and appended to.

Each action outputs what it did (``{name, value}`` for set/increment, ``{name, appended}``
for appends), which ``replay`` re-applies, in the original order, when a finished step is
reused by resume or rerun.
"""
from __future__ import annotations

import copy
from typing import Any

from engine.errors import ActionError
from engine.plugin import Context, Node

TYPES = {"string": str, "integer": int, "float": (int, float), "boolean": bool, "array": list, "object": dict}
NAME = {"type": "string", "description": "the variable's name"}
OUT = {"type": "object", "properties": {"name": {"type": "string"}, "value": {"description": "value after the action"}}}


def _check_type(name: str, kind: str, value: Any) -> None:
    expected = TYPES[kind.lower()]
    if isinstance(value, bool) and kind.lower() in ("integer", "float"):
        raise ActionError(f"variable '{name}' is {kind}, got a boolean", code="InvalidVariableValue")
    if not isinstance(value, expected):
        raise ActionError(f"variable '{name}' is {kind}, got {type(value).__name__} {value!r}",
                          code="InvalidVariableValue")


class _VariableNode(Node):
    outputs = OUT

    def replay(self, outputs: Any, context: Context) -> None:
        if isinstance(outputs, dict) and "name" in outputs and "value" in outputs:
            context.variables[outputs["name"]] = outputs["value"]

    @staticmethod
    def current(context: Context, name: str) -> Any:
        if name not in context.variables:
            raise ActionError(f"variable '{name}' is not initialized", code="UnknownVariable")
        return context.variables[name]


class InitializeVariable(_VariableNode):
    type = "InitializeVariable"
    title = "Declare a run variable"
    description = "Declares one variable with its type and initial value. Only at the top level of a flow."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["variables"],
                    "properties": {"variables": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                        "type": "object", "required": ["name", "type"], "additionalProperties": False,
                        "properties": {"name": NAME, "type": {"enum": sorted(TYPES) + [t.capitalize() for t in TYPES]},
                                       "value": {}}}}}}
    inputs_required = True
    placement = "top-level"
    declares_variables = True
    example = {"type": "InitializeVariable", "inputs": {"variables": [{"name": "count", "type": "integer", "value": 0}]}}

    @classmethod
    def declared_variables(cls, action: dict) -> list[str]:
        inputs = action.get("inputs")
        variables = inputs.get("variables") if isinstance(inputs, dict) else None
        return [v["name"] for v in variables or () if isinstance(v, dict) and isinstance(v.get("name"), str)] \
            if isinstance(variables, list) else []

    async def run(self, inputs: Any, context: Context) -> Any:
        var = inputs["variables"][0]
        kind = var["type"].lower()
        value = var.get("value", {"string": "", "integer": 0, "float": 0.0, "boolean": False,
                                  "array": [], "object": {}}[kind])
        _check_type(var["name"], kind, value)
        context.variables.declare(var["name"], kind, copy.deepcopy(value))  # appends must not change this output
        return {"name": var["name"], "value": value}

    def replay(self, outputs: Any, context: Context) -> None:
        var = context.action.inputs["variables"][0]
        context.variables.declare(outputs["name"], var["type"].lower(), copy.deepcopy(outputs.get("value")))


class SetVariable(_VariableNode):
    type = "SetVariable"
    title = "Set a variable"
    description = "Sets a declared variable to a value of its type."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["name", "value"],
                    "properties": {"name": NAME, "value": {}}}
    inputs_required = True
    example = {"type": "SetVariable", "inputs": {"name": "status", "value": "done"}}

    async def run(self, inputs: Any, context: Context) -> Any:
        name = inputs["name"]
        self.current(context, name)
        _check_type(name, context.variables.kind(name), inputs["value"])
        context.variables[name] = inputs["value"]
        return {"name": name, "value": inputs["value"]}


class IncrementVariable(_VariableNode):
    type = "IncrementVariable"
    title = "Add to a number variable"
    description = "Adds `value` (default 1) to an integer or float variable."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {"name": NAME, "value": {"type": "number", "default": 1}}}
    inputs_required = True
    sign = 1
    example = {"type": "IncrementVariable", "inputs": {"name": "count", "value": 1}}

    async def run(self, inputs: Any, context: Context) -> Any:
        name = inputs["name"]
        current = self.current(context, name)
        if context.variables.kind(name) not in ("integer", "float"):
            raise ActionError(f"variable '{name}' is not a number", code="InvalidVariableValue")
        value = current + self.sign * inputs.get("value", 1)
        context.variables[name] = value
        return {"name": name, "value": value}


class DecrementVariable(IncrementVariable):
    type = "DecrementVariable"
    title = "Subtract from a number variable"
    description = "Subtracts `value` (default 1) from an integer or float variable."
    sign = -1
    example = {"type": "DecrementVariable", "inputs": {"name": "count", "value": 1}}


class AppendToArrayVariable(_VariableNode):
    type = "AppendToArrayVariable"
    title = "Append to an array variable"
    description = "Appends `value` to an array variable."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["name", "value"],
                    "properties": {"name": NAME, "value": {}}}
    inputs_required = True
    example = {"type": "AppendToArrayVariable", "inputs": {"name": "ids", "value": "{{ item().id }}"}}

    async def run(self, inputs: Any, context: Context) -> Any:
        name = inputs["name"]
        current = self.current(context, name)
        if not isinstance(current, list):
            raise ActionError(f"variable '{name}' is not an array", code="InvalidVariableValue")
        current.append(inputs["value"])  # in place: a loop of appends stays linear
        return {"name": name, "appended": inputs["value"]}

    def replay(self, outputs: Any, context: Context) -> None:
        context.variables[outputs["name"]].append(outputs["appended"])


class AppendToStringVariable(_VariableNode):
    type = "AppendToStringVariable"
    title = "Append to a string variable"
    description = "Appends `value` (as text) to a string variable."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["name", "value"],
                    "properties": {"name": NAME, "value": {}}}
    inputs_required = True
    example = {"type": "AppendToStringVariable", "inputs": {"name": "log", "value": "step done; "}}

    async def run(self, inputs: Any, context: Context) -> Any:
        from engine.expressions import to_text

        name = inputs["name"]
        current = self.current(context, name)
        if not isinstance(current, str):
            raise ActionError(f"variable '{name}' is not a string", code="InvalidVariableValue")
        text = to_text(inputs["value"])
        context.variables[name] = current + text
        return {"name": name, "appended": text}

    def replay(self, outputs: Any, context: Context) -> None:
        context.variables[outputs["name"]] += outputs["appended"]
