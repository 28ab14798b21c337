"""engine/registry.py: finding node modules and indexing what they declare."""
import importlib
import pkgutil
import types
from importlib.metadata import entry_points

import pytest

import nodes
from engine import registry as registry_module
from engine.plugin import ConnectionSpec, Node, WebhookAuth
from engine.registry import Registry, default_registry


def module(name: str, **declared) -> types.ModuleType:
    m = types.ModuleType(name)
    for key, value in declared.items():
        setattr(m, key, value)
    return m


class Ping(Node):
    type = "acme.Ping"
    title = "Ping"


class OtherPing(Node):
    type = "ACME.PING"


class AcmeAuth(WebhookAuth):
    kind = "acme"
    connection = "acme"


ACME = ConnectionSpec(kind="acme", description="Acme API", settings={"type": "object"})


def test_a_module_contributes_its_nodes_connections_filters_and_auth():
    reg = Registry()
    reg.add_module(module("acme_nodes", NODES=[Ping], CONNECTIONS=[ACME], FILTERS={"shout": str.upper},
                          AUTH=[AcmeAuth]))
    assert reg.modules == ["acme_nodes"]
    assert (reg.nodes, reg.connections, reg.auth) == ({"acme.ping": Ping}, {"acme": ACME}, {"acme": AcmeAuth})
    assert reg.filters["shout"]("hi") == "HI"


@pytest.mark.parametrize("name, found", [("acme.Ping", Ping), ("ACME.ping", Ping), ("acme.Pong", None), ("", None)])
def test_type_names_are_found_case_insensitively(name, found):
    reg = Registry()
    reg.add_node(Ping)
    assert reg.node(name) is found


def test_the_same_type_from_two_modules_is_an_error_naming_both():
    reg = Registry()
    reg.add_node(Ping)
    reg.add_node(Ping)  # the same class again is harmless
    with pytest.raises(ValueError, match="node type 'ACME.PING' is declared twice"):
        reg.add_node(OtherPing)


def test_every_built_in_node_module_is_registered():
    reg = default_registry()
    assert {"nodes.core", "nodes.http", "nodes.twilio", "nodes.sendgrid", "nodes.stripe", "nodes.salesforce",
            "nodes.azure_eventgrid"} <= set(reg.modules)
    assert reg.broken == {}
    assert reg.type_names() == sorted(reg.type_names())


def test_a_plugin_module_that_cannot_be_imported_is_reported_and_the_rest_still_load(monkeypatch):
    monkeypatch.setattr(registry_module, "_module_names", lambda: ["nodes.core", "flowrun_no_such_plugin"])
    reg = default_registry.__wrapped__()
    assert reg.modules == ["nodes.core"]
    assert reg.broken["flowrun_no_such_plugin"].startswith("ModuleNotFoundError")
    assert reg.node("Compose") is not None


def test_every_node_declares_what_the_docs_need():
    for node in default_registry().nodes.values():
        assert node.type and node.title and node.description, node
        assert node.example.get("type") == node.type, node.type
        assert node.example.get("connection", node.connection) in (node.connection, *node.connection_kinds()), node.type


def test_every_node_module_shipped_with_flowrun_is_registered_through_an_entry_point():
    declared = {ep.value for ep in entry_points(group="flowrun.nodes")}
    vendor_modules = []
    for info in pkgutil.iter_modules(nodes.__path__):
        module = importlib.import_module(f"nodes.{info.name}")
        if any(hasattr(module, name) for name in ("NODES", "AUTH", "CONNECTIONS")):
            vendor_modules.append(module.__name__)
    assert vendor_modules, "nodes/ declares no module?"
    assert sorted(set(vendor_modules) - declared) == []


def test_the_registry_holds_exactly_the_entry_points_modules():
    declared = {ep.value for ep in entry_points(group="flowrun.nodes")}
    registry = default_registry()
    assert set(registry.modules) == declared - set(registry.broken)
    assert registry.broken == {}
    assert "eventgrid" in registry.auth and "eventgrid" in registry.connections
