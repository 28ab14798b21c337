"""engine/schema.py: the flow and connections JSON Schemas, generated from the declarations."""
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from engine.connections import Connections
from engine.errors import FlowError
from engine.registry import default_registry
from engine.schema import (COMMITTED, CONNECTIONS_COMMITTED, TEMPLATE, action_schema, connections_schema,
                           dumps, flow_schema, templatable)

ROOT = Path(__file__).parents[2]
FLOW_SCHEMA = Draft202012Validator(flow_schema(default_registry()))
CONNECTIONS_SCHEMA = Draft202012Validator(connections_schema(default_registry()))


def test_the_committed_flow_schema_matches_the_node_declarations():
    """schemas/flow.schema.json is generated: regenerate it with `flowrun schema > schemas/flow.schema.json`."""
    assert COMMITTED.read_text() == dumps(flow_schema(default_registry()))


def test_the_committed_connections_schema_matches_the_connection_declarations():
    """Regenerate it with `flowrun schema --connections > schemas/connections.schema.json`."""
    assert CONNECTIONS_COMMITTED.read_text() == dumps(connections_schema(default_registry()))


def test_both_schemas_are_valid_json_schema():
    Draft202012Validator.check_schema(flow_schema(default_registry()))
    Draft202012Validator.check_schema(connections_schema(default_registry()))


@pytest.mark.parametrize("schema, expected", [
    ({"type": "integer"}, {"anyOf": [{"type": "integer"}, TEMPLATE]}),
    ({"enum": ["a", "b"]}, {"anyOf": [{"enum": ["a", "b"]}, TEMPLATE]}),
    ({"description": "anything"}, {"description": "anything"}),
    ({"type": "object", "properties": {"n": {"type": "number"}}},
     {"anyOf": [{"type": "object", "properties": {"n": {"anyOf": [{"type": "number"}, TEMPLATE]}}}, TEMPLATE]}),
    ({"type": "array", "items": {"type": "string"}},
     {"anyOf": [{"type": "array", "items": {"anyOf": [{"type": "string"}, TEMPLATE]}}, TEMPLATE]}),
])
def test_every_constrained_value_may_also_be_a_template(schema, expected):
    assert templatable(schema) == expected


def test_an_action_schema_pins_its_type_and_requires_what_the_node_requires():
    compose = default_registry().node("Compose")
    out = action_schema(compose)
    assert out["properties"]["type"]["pattern"] == "^[Cc][Oo][Mm][Pp][Oo][Ss][Ee]$"
    assert out["additionalProperties"] is False
    foreach = action_schema(default_registry().node("Foreach"))
    assert set(foreach["required"]) >= {"foreach", "actions"}


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in
                                        [*ROOT.glob("flows/*.yaml"), *ROOT.glob("examples/**/*.yaml")]
                                        if p.name != "connections.yaml" and not p.name.endswith(".test.yaml")))
def test_every_bundled_flow_matches_the_flow_schema(path):
    data = yaml.safe_load((ROOT / path).read_text())
    assert [e.message for e in FLOW_SCHEMA.iter_errors(data)] == []


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("**/connections.yaml")
                                        if ".venv" not in p.parts))
def test_every_bundled_connections_file_matches_the_connections_schema(path):
    data = yaml.safe_load((ROOT / path).read_text())
    assert [e.message for e in CONNECTIONS_SCHEMA.iter_errors(data)] == []


@pytest.mark.parametrize("entry, valid", [
    ({"kind": "stripe", "secrets": {"api_key": "STRIPE_API_KEY"}}, True),
    ({"kind": "stripe", "endpoint": "http://127.0.0.1:1", "settings": {"api_version": "2024-06-20"},
      "secrets": {"api_key": "STRIPE_API_KEY"}, "description": "payments"}, True),
    ({"kind": "twilio", "settings": {"account_sid": "AC0123456789abcdef0123456789abcdef"},
      "secrets": {"auth_token": "TWILIO_AUTH_TOKEN"}}, True),
    ({"kind": "strip", "secrets": {"api_key": "STRIPE_API_KEY"}}, False),            # unknown kind
    ({"secrets": {"api_key": "STRIPE_API_KEY"}}, False),                             # no kind
    ({"kind": "stripe", "settings": {"api_key": "sk_live_literal"}}, False),         # a literal secret
    ({"kind": "stripe", "secrets": {"api_version": "X"}}, False),                   # not a secret
    ({"kind": "stripe", "secrets": {"api_key": "not a name!"}}, False),             # not a variable name
    ({"kind": "stripe", "secret": {"api_key": "STRIPE_API_KEY"}}, False),           # unknown key
])
def test_the_connections_schema_agrees_with_the_connections_loader(entry, valid, tmp_path):
    data = {"connections": {"main": entry}}
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        Connections.load(path, default_registry())
        loader_ok = True
    except FlowError:
        loader_ok = False
    schema_ok = not list(CONNECTIONS_SCHEMA.iter_errors(data))
    assert (loader_ok, schema_ok) == (valid, valid)


def test_secrets_are_environment_variable_names_in_the_connections_schema():
    stripe = connections_schema(default_registry())["$defs"]["kind:stripe"]
    assert "api_key" not in stripe["properties"]["settings"]["properties"]
    assert stripe["properties"]["secrets"]["properties"]["api_key"]["pattern"] == "^[A-Za-z0-9_]+$"

