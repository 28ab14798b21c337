"""The registry: node modules come from `flowrun.nodes` entry points, and only from there."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

import nodes
from engine.registry import default_registry


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
