"""The flow JSON Schema, generated from the registered nodes and triggers (never written by hand).

Each node contributes an ``if type == X then <node's action schema>`` branch (each trigger
type one under ``triggers``: a union keyed on ``type``), so editors
with yaml-language-server complete inputs per action type. The loader does not validate
against that union (every action would be tried against every node type): it takes
``validation_schemas`` instead, one small schema per node type, and dispatches on ``type``.

Letter case: type names and runAfter statuses are case-insensitive (``type: compose``,
``[succeeded]``), as in Logic Apps; the schema accepts them in any case (``any_case``) and
offers the canonical spelling for completion. Wherever a node's input schema
wants a number, object, enum..., a templated string (``{{ ... }}``, ``@expr``, ``@{...}``) is accepted too: it is
checked against the node's real schema after it has been evaluated, just before the node runs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .caseless import any_case, caseless
from .concurrency import SCHEMA as CONCURRENCY
from .model import STATUSES
from .registry import Registry

SCHEMA_ID = "https://flowrun.dev/schemas/flow.schema.json"
TEMPLATE = {"type": "string", "pattern": r"^@[\s\S]|\{[{%]|@\{",
            "description": "a {{ template }} or an @ expression evaluated when the action runs"}
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,79}$"
COMMITTED = Path(__file__).resolve().parent.parent / "schemas" / "flow.schema.json"

DURATION = {"type": "string", "pattern": r"^P(?!$)(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$",
            "description": "ISO-8601 duration, e.g. PT30S"}



COMMON_ACTION_PROPERTIES: dict[str, Any] = {
    "type": {"type": "string"},
    "description": {"type": "string"},
    "inputs": {},
    "runAfter": {
        "type": "object",
        "description": "Actions (in the same scope) this one waits for, and the statuses that let it run.",
        "additionalProperties": {"type": "array", "items": any_case(STATUSES)},
    },
    "retryPolicy": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "type": {"enum": ["none", "default", "fixed", "exponential"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 90},
            "interval": DURATION, "minimumInterval": DURATION, "maximumInterval": DURATION,
        },
    },
    "timeout": DURATION,
    "limit": {"type": "object", "properties": {"timeout": DURATION, "count": {"type": "integer", "minimum": 1}},
              "additionalProperties": False},
    "connection": {"type": "string", "description": "name of a connection in connections.yaml"},
    "onInterrupted": {"enum": ["retry", "fail"],
                      "description": "An action in flight when its process died: run it again on resume "
                                     "(retry, the default: at least once) or fail it (fail: at most once)."},
    "runtimeConfiguration": {"type": "object"},
    "operationOptions": {"type": "string"},
    "trackedProperties": {"type": "object"},
    "kind": {"type": "string", "description": "Logic Apps' action kind (Response: Http); informational"},
    "metadata": {"type": "object", "description": "designer metadata (Logic Apps, Power Automate); not used"},
}

PARAMETER = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {
        "type": any_case(["string", "int", "integer", "float", "number", "bool", "boolean", "array",
                          "object", "securestring", "secureobject"], "the parameter's type, in any letter case"),
        "defaultValue": {}, "default": {},
        "allowedValues": {"type": "array"},
        "description": {"type": "string"},
        "metadata": {"type": "object"},
        # JSON Schema keywords Logic Apps (and ARM) accept on a parameter declaration
        **{k: {"type": "integer", "minimum": 0} for k in ("minLength", "maxLength", "minItems", "maxItems")},
        **{k: {"type": "number"} for k in ("minValue", "maxValue", "minimum", "maximum")},
        "pattern": {"type": "string"},
        "value": {"description": "the parameter's value (Standard parameters.json, ARM parameters)"},
    },
}

# Keys any trigger may have, whatever its type (Logic Apps' own; most are kept for compatibility).
COMMON_TRIGGER_PROPERTIES: dict[str, Any] = {
    "kind": {"type": "string"},
    "description": {"type": "string"},
    "conditions": {"type": "array"},
    "splitOn": {"type": "string"},
    "runtimeConfiguration": {"type": "object"},
    "operationOptions": {"type": "string"},
    "correlation": {"type": "object"},
    "metadata": {"type": "object", "description": "designer metadata (Logic Apps, Power Automate); not used"},
}


def trigger_schema(trigger: type) -> dict:
    """One trigger type's definition schema, from its declaration (push triggers also take the
    listener's ``auth``, required, and ``dedupe``)."""
    from .triggers import PUSH_KEYS

    props = dict(COMMON_TRIGGER_PROPERTIES)
    props["type"] = {"type": "string", "pattern": f"^{caseless(trigger.type)}$",
                     "description": trigger.title or trigger.description}
    required = list(trigger.required)
    if trigger.mode == "push":
        props.update(PUSH_KEYS)
        required.insert(0, "auth")
    if getattr(trigger, "connection", None):
        props["connection"] = {"type": "string",
                               "description": f"the name of a connection of kind '{trigger.connection}'"}
        required.append("connection")
    props.update(trigger.config)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    if trigger.description:
        out["description"] = trigger.description
    return out


def templatable(schema: Any) -> Any:
    """A copy of ``schema`` where every constrained value may also be a template string."""
    if not isinstance(schema, dict):
        return schema
    s = copy.copy(schema)
    for key in ("properties", "patternProperties", "$defs"):
        if isinstance(s.get(key), dict):
            s[key] = {k: templatable(v) for k, v in s[key].items()}
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(s.get(key), dict):
            s[key] = templatable(s[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(s.get(key), list):
            s[key] = [templatable(v) for v in s[key]]
    constrained = any(k in s for k in ("type", "enum", "const", "pattern", "format", "minimum",
                                       "maximum", "minLength", "maxLength", "anyOf", "oneOf"))
    if not constrained:
        return s
    return {"anyOf": [s, TEMPLATE]}


def action_schema(node: type) -> dict:
    props = dict(COMMON_ACTION_PROPERTIES)
    props["type"] = {"type": "string", "pattern": f"^{caseless(node.type)}$",
                     "description": node.title or node.description}
    props["inputs"] = templatable(node.input_schema)
    props.update({k: templatable(v) for k, v in node.fields.items()})
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = list(node.required_fields) + (["inputs"] if node.inputs_required else [])
    if required:
        out["required"] = required
    if node.description:
        out["description"] = node.description
    return out


def flow_schema(registry: Registry) -> dict:
    nodes = sorted(registry.nodes.values(), key=lambda n: n.type)
    triggers = sorted(registry.triggers.values(), key=lambda t: t.type)
    defs: dict[str, Any] = {
        "actions": {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                    "additionalProperties": {"$ref": "#/$defs/action"}},
        "action": {
            "type": "object", "required": ["type"],
            "properties": {"type": any_case([n.type for n in nodes],
                                            "the action type (a node: `flowrun nodes`), in any letter case")},
            "allOf": [{"if": {"properties": {"type": {"pattern": f"^{caseless(n.type)}$"}}, "required": ["type"]},
                       "then": {"$ref": f"#/$defs/node:{n.type}"}} for n in nodes],
        },
        "parameter": PARAMETER,
        "trigger": {
            "type": "object", "required": ["type"],
            "properties": {"type": any_case([t.type for t in triggers],
                                            "the trigger type (`flowrun nodes` lists them), in any letter case")},
            "allOf": [{"if": {"properties": {"type": {"pattern": f"^{caseless(t.type)}$"}}, "required": ["type"]},
                       "then": {"$ref": f"#/$defs/trigger:{t.type}"}} for t in triggers],
        },
    }
    for n in nodes:
        defs[f"node:{n.type}"] = action_schema(n)
    for t in triggers:
        defs[f"trigger:{t.type}"] = trigger_schema(t)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "flowrun flow",
        "description": "A flowrun flow file (Logic-Apps-style workflow definition in YAML).",
        "type": "object",
        "additionalProperties": False,
        "required": ["actions"],
        "properties": {
            "$schema": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "contentVersion": {"type": "string"},
            "staticResults": {"type": "object", "description": "Logic Apps' mocked results, by name, for "
                                                               "actions whose runtimeConfiguration.staticResult "
                                                               "is Enabled",
                              "additionalProperties": {"type": "object", "properties": {
                                  "status": {"type": "string"}, "outputs": {}, "error": {}}}},
            "parameters": {"type": "object", "additionalProperties": {"$ref": "#/$defs/parameter"}},
            "triggers": {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                         "additionalProperties": {"$ref": "#/$defs/trigger"}},
            "actions": {"$ref": "#/$defs/actions"},
            "concurrency": CONCURRENCY,
            "outputs": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["value"], "additionalProperties": False,
                "properties": {"type": {"type": "string"}, "value": {}, "description": {"type": "string"}}}},
        },
        "$defs": defs,
    }


# Nested action blocks as the per-node schemas see them: a mapping of well-named objects. Each
# nested action is then validated against its own node's schema, like a top-level one.
SHALLOW_ACTIONS = {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                   "additionalProperties": {"type": "object"}}


def validation_schemas(registry: Registry) -> tuple[dict, dict[str, dict]]:
    """What the loader validates against: the flow without the insides of its actions (its
    triggers in full: a flow has few), and one schema per node type (by canonical name) whose
    nested action blocks are only checked to be mappings of objects."""
    shell = flow_schema(registry)
    shell["$defs"] = {k: v for k, v in shell["$defs"].items() if not k.startswith("node:")}
    shell["$defs"]["actions"] = SHALLOW_ACTIONS
    shell["$defs"]["action"] = {"type": "object"}
    per_node = {n.type: {**action_schema(n), "$defs": {"actions": SHALLOW_ACTIONS}}
                for n in registry.nodes.values()}
    return shell, per_node


def dumps(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


# -- connections.yaml ---------------------------------------------------------------------------

CONNECTIONS_ID = "https://flowrun.dev/schemas/connections.schema.json"
CONNECTIONS_COMMITTED = COMMITTED.parent / "connections.schema.json"
ENV_VAR = {"type": "string", "pattern": r"^[A-Za-z0-9_]+$",
           "description": "the NAME of the environment variable holding the secret"}


def connection_schema(spec: Any) -> dict:
    """One connection kind's entry in connections.yaml: settings without the secrets, and the
    secrets as environment variable names (a literal secret in the file is an error)."""
    props = spec.settings.get("properties", {})
    secret_names = spec.secret_names
    settings = {k: v for k, v in spec.settings.items() if k not in ("properties", "required")}
    settings["properties"] = {k: v for k, v in props.items() if k not in secret_names}
    required = [k for k in spec.settings.get("required", []) if k not in secret_names]
    if required:
        settings["required"] = required
    secrets = {"type": "object", "additionalProperties": False,
               "properties": {k: dict(ENV_VAR, description=f"environment variable holding {k}"
                                      + (f": {props[k]['description']}" if props[k].get("description") else ""))
                              for k in secret_names}}
    required_secrets = [k for k in spec.settings.get("required", []) if k in secret_names]
    if required_secrets:
        secrets["required"] = required_secrets
    return {"type": "object", "description": spec.description, "additionalProperties": False,
            "required": ["kind"],
            "properties": {"kind": {"const": spec.kind}, "description": {"type": "string"},
                           "endpoint": {"type": "string", "description": "base URL override (sandboxes, "
                                                                         "proxies, tests)"},
                           "settings": settings, "secrets": secrets}}


def connections_schema(registry: Registry) -> dict:
    """JSON Schema of connections.yaml, generated from the registered ConnectionSpecs."""
    specs = sorted(registry.connections.values(), key=lambda s: s.kind)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": CONNECTIONS_ID,
        "title": "flowrun connections",
        "description": "connections.yaml: named connections, their settings, and the environment "
                       "variables their secrets come from.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            "connections": {"type": "object", "additionalProperties": {"$ref": "#/$defs/connection"}},
        },
        "$defs": {
            "connection": {
                "type": "object", "required": ["kind"],
                "properties": {"kind": {"enum": [s.kind for s in specs],
                                        "description": "the connection kind (`flowrun nodes KIND`)"}},
                "allOf": [{"if": {"properties": {"kind": {"const": s.kind}}, "required": ["kind"]},
                           "then": {"$ref": f"#/$defs/kind:{s.kind}"}} for s in specs],
            },
            **{f"kind:{s.kind}": connection_schema(s) for s in specs},
        },
    }
