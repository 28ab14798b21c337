"""Finds node modules and indexes what they declare.

One source: every module named by an installed package's ``flowrun.nodes`` entry point
(flowrun's own ``nodes.*`` are registered in its pyproject.toml exactly like a third-party
package's, so the two can never drift). A module exposes ``NODES``, and optionally
``CONNECTIONS``, ``FILTERS``, ``AUTH`` and ``TRIGGERS`` (see ``engine.plugin``); a module with
only ``TRIGGERS`` is a plugin module too.
Type names are matched case-insensitively, as Logic Apps does.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Callable

from .plugin import ConnectionSpec, Node, Trigger, WebhookAuth


class Registry:
    def __init__(self) -> None:
        self.nodes: dict[str, type[Node]] = {}
        self.connections: dict[str, ConnectionSpec] = {}
        self.filters: dict[str, Callable[..., Any]] = {}
        self.auth: dict[str, type[WebhookAuth]] = {}
        self.triggers: dict[str, type[Trigger]] = {}  # by type name, lower-cased
        self.modules: list[str] = []
        self.broken: dict[str, str] = {}  # module -> why it could not be imported

    def add_module(self, module: Any) -> None:
        self.modules.append(module.__name__)
        for node in getattr(module, "NODES", []):
            self.add_node(node)
        for spec in getattr(module, "CONNECTIONS", []):
            self.connections[spec.kind] = spec
        self.filters.update(getattr(module, "FILTERS", {}))
        for auth in getattr(module, "AUTH", []):
            self.auth[auth.kind] = auth
        for trigger in getattr(module, "TRIGGERS", []):
            self.add_trigger(trigger)

    def add_node(self, node: type[Node]) -> None:
        key = node.type.lower()
        if key in self.nodes and self.nodes[key] is not node:
            raise ValueError(f"node type '{node.type}' is declared twice "
                             f"({self.nodes[key].__module__} and {node.__module__})")
        self.nodes[key] = node

    def node(self, type_name: str) -> type[Node] | None:
        return self.nodes.get(str(type_name).lower())

    def add_trigger(self, trigger: type[Trigger]) -> None:
        key = trigger.type.lower()
        if key in self.triggers and self.triggers[key] is not trigger:
            raise ValueError(f"trigger type '{trigger.type}' is declared twice "
                             f"({self.triggers[key].__module__} and {trigger.__module__})")
        self.triggers[key] = trigger

    def trigger(self, type_name: str) -> type[Trigger] | None:
        return self.triggers.get(str(type_name).lower())

    def type_names(self) -> list[str]:
        return sorted(n.type for n in self.nodes.values())


def _module_names() -> list[str]:
    names: list[str] = []
    for ep in entry_points(group="flowrun.nodes"):
        if ep.value not in names:
            names.append(ep.value)
    return names


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    reg = Registry()
    for name in _module_names():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an installed plugin that is broken must not break the rest
            reg.broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        if hasattr(module, "NODES") or hasattr(module, "TRIGGERS"):
            reg.add_module(module)
    return reg
