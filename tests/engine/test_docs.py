"""engine/docs.py: the reference generated from the declarations, with every example validated."""
import json
import re
import types

from engine.plugin import PullTrigger

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from engine import docs
from engine.cli import main
from engine.connections import Connections
from engine.errors import FlowError
from engine.loader import load_text
from engine.registry import Registry, default_registry

CATALOG = docs.catalog(default_registry())


def test_the_committed_docs_match_the_declarations():
    """docs/nodes.md is generated: regenerate it with `flowrun nodes --markdown > docs/nodes.md`."""
    assert docs.COMMITTED.read_text(encoding="utf-8") == docs.markdown(CATALOG)


def test_every_action_trigger_auth_kind_and_connection_kind_is_documented():
    reg = default_registry()
    text = docs.COMMITTED.read_text(encoding="utf-8")
    for name in [n.type for n in reg.nodes.values()] + ["Request", "Recurrence", "Manual", "none", "key",
                                                          "hmac", *reg.auth, *reg.connections]:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("entry", CATALOG.entries(), ids=lambda e: f"{e.section}:{e.name}")
def test_every_entry_has_a_description_and_an_example(entry):
    assert entry.description.strip()
    assert entry.example


def connections_of_every_kind(tmp_path) -> Connections:
    """The connection examples, each under the name of its kind, through the connections loader."""
    merged = {}
    for entry in CATALOG.connections:
        merged.update(entry.example["connections"])
    for entry in CATALOG.auth:  # auth examples name a connection too (github, inbound: an http kind)
        name = entry.example["my_trigger"]["auth"].get("connection")
        if name and name not in merged:
            merged[name] = merged["http"]
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": merged}))
    return Connections.load(path, default_registry())


@pytest.mark.parametrize("entry", CATALOG.connections, ids=lambda e: e.name)
def test_every_connection_example_passes_the_connections_loader(entry, tmp_path):
    path = tmp_path / "connections.yaml"
    path.write_text(yaml.safe_dump(entry.example))
    loaded = Connections.load(path, default_registry())
    assert loaded.specs[entry.name]["kind"] == entry.name


UNKNOWN_ACTION = re.compile(r"unknown action '([^']+)'")


def load_in_context(example: dict, name: str, connections: Connections) -> None:
    """Load a flow holding the example. An example may read earlier actions (``body('find')``):
    those, and only those, are supplied as Compose actions it runs after; any other problem fails."""
    upstream: dict[str, dict] = {}
    while True:
        action = dict(example, runAfter={u: ["Succeeded"] for u in upstream}) if upstream else example
        flow = {"actions": {**upstream, "example": action}}
        try:
            load_text(json.dumps(flow), f"<{name} example>", connections=connections)
            return
        except FlowError as exc:
            missing = {m.group(1) for p in exc.problems if (m := UNKNOWN_ACTION.search(p.message))}
            if not missing or missing & set(upstream) or len(missing) != len(exc.problems):
                raise
            upstream.update({m: {"type": "Compose", "inputs": {}} for m in sorted(missing)})


@pytest.mark.parametrize("entry", CATALOG.actions, ids=lambda e: e.name)
def test_every_action_example_passes_the_flow_loader(entry, tmp_path):
    load_in_context(entry.example["my_action"], entry.name, connections_of_every_kind(tmp_path))


@pytest.mark.parametrize("entry", CATALOG.triggers + CATALOG.auth, ids=lambda e: f"{e.section}:{e.name}")
def test_every_trigger_and_auth_example_passes_the_flow_loader(entry):
    flow = {"triggers": {"example": entry.example["my_trigger"]}, "actions": {}}
    load_text(json.dumps(flow), f"<{entry.name} example>")


@pytest.mark.parametrize("entry", CATALOG.auth, ids=lambda e: e.name)
def test_every_auth_example_matches_its_options_and_names_a_connection_of_the_right_kind(entry, tmp_path):
    from engine.listener.auth import auth_kinds

    auth = dict(entry.example["my_trigger"]["auth"])
    cls = auth_kinds(default_registry())[auth.pop("type")]
    name = auth.pop("connection", None)
    assert list(Draft202012Validator(cls.options or {}).iter_errors(auth)) == []
    if cls.connection:
        assert connections_of_every_kind(tmp_path).specs[name]["kind"] == cls.connection
    else:
        assert (name is None) == (entry.name in ("none", "sas"))  # these two take no connection


@pytest.mark.parametrize("kind, header", [("hmac", "X-Hub-Signature-256"), ("key", "X-API-Key"),
                                          ("stripe", "Stripe-Signature"), ("twilio", "X-Twilio-Signature")])
def test_signed_auth_kinds_name_their_header(kind, header):
    (entry,) = [e for e in CATALOG.auth if e.name == kind]
    assert entry.facts["Signature / credential header"] == f"`{header}`"


@pytest.mark.parametrize("kind, connection", [("stripe", "`stripe`"), ("twilio", "`twilio`"),
                                              ("eventgrid", "`eventgrid`")])
def test_vendor_auth_kinds_name_the_connection_kind_holding_their_secret(kind, connection):
    (entry,) = [e for e in CATALOG.auth if e.name == kind]
    assert entry.facts["Connection kind"] == connection


def test_connection_kinds_list_what_uses_them():
    (stripe,) = [e for e in CATALOG.connections if e.name == "stripe"]
    assert "`stripe.CreateCustomer`" in stripe.facts["Used by"] and "auth `stripe`" in stripe.facts["Used by"]
    assert stripe.facts["Secrets (environment variables)"] == "`api_key`, `webhook_secret`"


class Feed(PullTrigger):
    """Consume a feed: one run per message, committed before the cursor moves."""

    type = "acme.Feed"
    title = "Consume a feed"
    config = {"topic": {"type": "string"}}
    required = ("topic",)
    example = {"type": "acme.Feed", "topic": "orders"}


def test_triggers_are_documented_from_their_declarations():
    reg = Registry()
    reg.add_trigger(Feed)
    (entry,) = docs.catalog(reg).triggers
    assert (entry.name, entry.title, entry.facts) == ("acme.Feed", "Consume a feed", {"Runs as": "pull"})
    assert entry.description.startswith("Consume a feed: one run per message")
    assert entry.schemas == {"Schema": {"type": "object", "properties": Feed.config, "required": ["topic"]}}
    assert entry.example == {"my_trigger": Feed.example}


def test_a_module_declaring_nothing_documents_nothing_and_breaks_nothing():
    reg = Registry()
    reg.add_module(types.ModuleType("empty_plugin"))
    cat = docs.catalog(reg)
    assert (cat.actions, cat.connections) == ([], [])
    assert docs.markdown(cat).startswith("# Nodes, triggers")


# -- the command ------------------------------------------------------------------------------

def nodes(*args):
    return CliRunner().invoke(main, ["nodes", *args])


def test_nodes_lists_actions_then_triggers_auth_kinds_and_connection_kinds():
    out = nodes().output
    assert out.index("Compose") < out.index("Triggers:") < out.index("Auth kinds") < out.index("Connection kinds:")
    assert "twilio.SendSms" in out and "  hmac " in out and "  salesforce " in out


@pytest.mark.parametrize("name, expected", [
    ("http", ["Http: Send an HTTP request", "Inputs (JSON Schema)", "Example:", "Connection kind: http",
              "http (connection kind)"]),
    ("HMAC", ["hmac (auth kind)", "Signature / credential header: X-Hub-Signature-256", "Example (a trigger):"]),
    ("stripe", ["stripe (auth kind)", "Stripe-Signature", "stripe (connection kind)", "STRIPE_API_KEY"]),
    ("Recurrence", ["Recurrence (trigger)", "frequency"]),
])
def test_nodes_shows_any_documented_name_in_full(name, expected):
    result = nodes(name)
    assert result.exit_code == 0
    for text in expected:
        assert text in result.output, text


def test_an_unknown_name_is_one_line_with_a_suggestion():
    result = nodes("Compse")
    assert result.exit_code == 2  # bad usage
    assert result.output.strip().endswith("(did you mean 'Compose'?)")
    assert "Traceback" not in result.output


def test_nodes_markdown_prints_the_committed_page_and_check_agrees():
    assert nodes("--markdown").output == docs.COMMITTED.read_text(encoding="utf-8")
    assert nodes("--check").exit_code == 0
