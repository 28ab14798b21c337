"""Compose, Query (filter), Select (map), Join and ParseJson: shaping data between actions."""
from __future__ import annotations

import html
import json
from typing import Any

import anyio


from engine import safejson
from engine.errors import ActionError
from engine.expressions import to_text
from engine.plugin import Context, Node

from .conditions import truth


class Compose(Node):
    type = "Compose"
    title = "Build a value"
    description = "Evaluates `inputs` (any JSON; strings may hold templates) and outputs the result."
    input_schema: dict = {}
    example = {"type": "Compose", "inputs": {"greeting": "Hello {{ triggerBody().name }}"}}
    outputs = {"description": "the evaluated inputs"}
    example_outputs = {"greeting": "Hello Ada"}  # the evaluated inputs

    async def run(self, inputs: Any, context: Context) -> Any:
        return inputs


class Query(Node):
    type = "Query"
    title = "Filter an array"
    description = "Keeps the items of `from` for which `where` (evaluated with `item()` bound) is true."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["from", "where"],
                    "properties": {"from": {"type": "array"},
                                   "where": {"description": "condition evaluated per item"}}}
    lazy = ("where",)
    inputs_required = True
    example = {"type": "Query", "inputs": {"from": "{{ triggerBody().orders }}", "where": "{{ item().total > 100 }}"}}
    outputs = {"type": "array", "description": "the items kept"}

    async def run(self, inputs: Any, context: Context) -> Any:
        where, kept = inputs["where"], []
        for i, x in enumerate(inputs["from"]):
            if truth(await context.evaluate_async(where, item=x)):
                kept.append(x)
            if i % 256 == 255:
                await anyio.sleep(0)  # a long array never holds the event loop
        return kept


class Select(Node):
    type = "Select"
    title = "Map an array"
    description = "Evaluates `select` once per item of `from` (with `item()` bound); outputs the array of results."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["from", "select"],
                    "properties": {"from": {"type": "array"}, "select": {"description": "value per item"}}}
    lazy = ("select",)
    inputs_required = True
    example = {"type": "Select", "inputs": {"from": "{{ triggerBody().orders }}",
                                            "select": {"id": "{{ item().id }}", "total": "{{ item().total }}"}}}
    outputs = {"type": "array"}

    async def run(self, inputs: Any, context: Context) -> Any:
        out = []
        for i, x in enumerate(inputs["from"]):
            out.append(await context.evaluate_async(inputs["select"], item=x))
            if i % 256 == 255:
                await anyio.sleep(0)  # a long array never holds the event loop
        return out


class Join(Node):
    type = "Join"
    title = "Join an array into a string"
    description = "Joins the items of `from` with `joinWith`."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["from", "joinWith"],
                    "properties": {"from": {"type": "array"}, "joinWith": {"type": "string"}}}
    inputs_required = True
    example = {"type": "Join", "inputs": {"from": [1, 2, 3], "joinWith": ","}}
    outputs = {"type": "string"}

    async def run(self, inputs: Any, context: Context) -> Any:
        return inputs["joinWith"].join(to_text(x) for x in inputs["from"])


class ParseJson(Node):
    type = "ParseJson"
    title = "Parse and validate JSON"
    description = "Parses `content` (a JSON string or a value) and validates it against `schema`."
    input_schema = {"type": "object", "additionalProperties": False, "required": ["content", "schema"],
                    "properties": {"content": {"description": "JSON text or a value"},
                                   "schema": {"type": "object", "description": "JSON Schema"}}}
    inputs_required = True
    example = {"type": "ParseJson", "inputs": {"content": "{{ triggerBody() }}",
                                               "schema": {"type": "object", "required": ["id"]}}}
    outputs = {"description": "the parsed content"}

    async def run(self, inputs: Any, context: Context) -> Any:
        content = inputs["content"]
        if isinstance(content, (str, bytes)):
            try:
                content = safejson.loads(content)  # bounded depth and numbers
            except ValueError as exc:
                raise ActionError(f"content is not valid JSON: {exc}", code="InvalidJSON") from None
        from jsonschema import Draft202012Validator  # imported when a flow uses ParseJson's schema

        errors = sorted(Draft202012Validator(inputs["schema"]).iter_errors(content), key=lambda e: list(e.path))
        if errors:
            msgs = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:10]]
            raise ActionError("content does not match the schema: " + "; ".join(msgs), code="SchemaMismatch",
                              details={"errors": msgs})
        return content


class Table(Node):
    type = "Table"
    title = "Make a CSV or HTML table from an array"
    description = ("Turns the objects of `from` into a CSV or HTML table. Without `columns`, the headers "
                   "are the items' property names (in order of first appearance); with `columns`, each "
                   "`{header, value}` gives a header and a value evaluated per item (`item()` bound). "
                   "CSV fields holding a comma, a quote or a line break are quoted; HTML is escaped.")
    input_schema = {"type": "object", "additionalProperties": False, "required": ["format", "from"],
                    "properties": {"format": {"enum": ["CSV", "HTML", "csv", "html"]},
                                   "from": {"type": "array"},
                                   "columns": {"type": "array", "items": {
                                       "type": "object", "required": ["value"], "additionalProperties": False,
                                       "properties": {"header": {"type": "string"},
                                                      "value": {"description": "value per item"}}}}}}
    lazy = ("columns",)
    inputs_required = True
    example = {"type": "Table", "inputs": {"format": "CSV", "from": "{{ triggerBody().orders }}",
                                           "columns": [{"header": "Id", "value": "{{ item().id }}"}]}}
    outputs = {"type": "string", "description": "the table's text"}

    async def run(self, inputs: Any, context: Context) -> Any:
        items, columns = inputs["from"], inputs.get("columns")
        if columns:
            headers = [c.get("header", "") for c in columns]
            rows = []
            for i, x in enumerate(items):
                rows.append([await context.evaluate_async(c["value"], item=x) for c in columns])
                if i % 256 == 255:
                    await anyio.sleep(0)
        else:
            headers = list(dict.fromkeys(k for x in items if isinstance(x, dict) for k in x))
            rows = [[x.get(h) if isinstance(x, dict) else None for h in headers] for x in items]
        if inputs["format"].upper() == "CSV":
            return "\r\n".join(",".join(_csv(v) for v in row) for row in [headers, *rows]) + "\r\n"
        head = "".join(f"<th>{html.escape(to_text(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(to_text(v))}</td>" for v in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _csv(value: Any) -> str:
    text = to_text(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text
