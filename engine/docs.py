"""Reference documentation generated from what nodes, triggers, auth kinds and connection kinds
declare (never written by hand): ``flowrun nodes``, ``flowrun nodes NAME`` and ``docs/nodes.md``.

    catalog(registry)      -> Catalog: every action, trigger, auth kind and connection kind
    markdown(catalog)      -> the text of docs/nodes.md (``flowrun nodes --markdown``)
    listing(catalog)       -> the short listing ``flowrun nodes`` prints
    describe(catalog, name)-> one entry in full (``flowrun nodes NAME``), or None

Each entry carries an example; tests run every example through the loader (flows) and the
connections loader (connections.yaml), and fail when docs/nodes.md drifts from this output.

Triggers are documented from ``registry.triggers`` (trigger classes with ``type``, ``title``,
``description``, ``config_schema`` or ``schema``, ``example``) when the registry has them, else
from the flow schema's built-in trigger types.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .registry import Registry

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "nodes.md"
GENERATED_BY = "flowrun nodes --markdown > docs/nodes.md"


@dataclass
class Entry:
    """One documented thing: an action type, a trigger type, an auth kind or a connection kind."""

    section: str  # "action" | "trigger" | "auth" | "connection"
    name: str
    title: str
    description: str
    group: str = ""  # the node module (package) that declares it, e.g. nodes.stripe
    schemas: dict[str, Any] = field(default_factory=dict)  # heading -> JSON Schema
    facts: dict[str, str] = field(default_factory=dict)  # label -> value, e.g. Connection kind
    example: Any = None
    example_label: str = "Example"

    @property
    def anchor(self) -> str:
        return f"{self.section}-{self.name}".lower().replace(".", "-").replace(" ", "-")


@dataclass
class Catalog:
    actions: list[Entry]
    triggers: list[Entry]
    auth: list[Entry]
    connections: list[Entry]
    broken: dict[str, str]

    def entries(self) -> list[Entry]:
        return [*self.actions, *self.triggers, *self.auth, *self.connections]


# -- gathering ----------------------------------------------------------------------------------

def _doc(obj: Any) -> str:
    """An object's declared description, else its docstring, else its module's first paragraph."""
    text = getattr(obj, "description", "") or ""
    if not text and obj.__doc__ and obj.__doc__ is not getattr(obj.__mro__[1], "__doc__", None):
        text = inspect.getdoc(obj) or ""
    if not text:
        module = inspect.getmodule(obj)
        text = (inspect.getdoc(module) or "").split("\n\n")[0] if module else ""
    return " ".join(text.split()) if "\n\n" not in text else text.strip()


def _group(obj: Any) -> str:
    return ".".join(obj.__module__.split(".")[:2])


def _actions(registry: Registry) -> list[Entry]:
    out = []
    for node in sorted(registry.nodes.values(), key=lambda n: (_group(n), n.type.lower())):
        facts = {}
        if node.has_effect():  # (before the connection kind: the text form appends to that line)
            try:
                facts["Side effect (flowrun plan)"] = str(node.effect((node.example or {}).get("inputs") or {}))
            except Exception:  # noqa: BLE001  a describe that cannot read its own example
                facts["Side effect (flowrun plan)"] = "yes"
        elif node.reads_only:
            facts["Side effect (flowrun plan)"] = "none: it only reads through its connection"
        if node.connection:
            facts["Connection kind"] = " or ".join(f"`{k}`" for k in node.connection_kinds())
        schemas = {}
        if node.fields:
            schemas["Fields"] = node.fields
        schemas["Inputs (JSON Schema)"] = node.input_schema
        if node.outputs:
            schemas["Outputs"] = node.outputs
        if node.has_effect() or node.connection:
            schemas["Example outputs (what `flowrun plan` stands in)"] = node.example_output()
        out.append(Entry("action", node.type, node.title, node.description, _group(node), schemas, facts,
                         {"my_action": node.example}))
    return out


def _triggers(registry: Registry) -> list[Entry]:
    out = []
    for cls in sorted(set(registry.triggers.values()), key=lambda c: str(c.type).lower()):
        config = {"type": "object", "properties": cls.config, "required": list(cls.required)} if cls.config else {}
        out.append(Entry("trigger", cls.type, cls.title or "", _doc(cls), _group(cls),
                         {"Schema": config} if config else {}, {"Runs as": cls.mode},
                         {"my_trigger": cls.example or {"type": cls.type}}))
    return out


def _auth_kinds(registry: Registry) -> dict[str, Any]:
    from .listener.auth import auth_kinds  # the built-in kinds and those node modules declare

    return auth_kinds(registry)


def _auth(registry: Registry) -> list[Entry]:
    from .triggers import PushTrigger

    push = next((t.type for t in registry.triggers.values() if issubclass(t, PushTrigger)), "?")
    out = []
    for kind, cls in sorted(_auth_kinds(registry).items()):
        description = getattr(cls, "description", "") or _doc(cls)
        options = getattr(cls, "options", {}) or {}
        header = (getattr(cls, "header", None)
                  or options.get("properties", {}).get("header", {}).get("default"))
        facts = {}
        if header:
            facts["Signature / credential header"] = f"`{header}`"
        query = options.get("properties", {}).get("query", {}).get("default")
        if query:
            facts["Credential query parameter"] = f"`{query}`"
        if cls.connection:
            facts["Connection kind"] = f"`{cls.connection}`"
        elif kind != "none":
            facts["Connection kind"] = "any kind whose connection holds the secret (`secret`, default `token`)"
        example = getattr(cls, "example", None) or (
            {"type": kind, "connection": cls.connection} if cls.connection else {"type": kind})
        trigger = {"type": push, "auth": example}
        schemas = {"Options (JSON Schema)": options} if options.get("properties") else {}
        out.append(Entry("auth", kind, getattr(cls, "title", "") or "", description,
                         _group(cls), schemas, facts,
                         {"my_trigger": trigger}, "Example (a trigger)"))
    return out


def _connections(registry: Registry) -> list[Entry]:
    uses: dict[str, list[str]] = {}
    for node in registry.nodes.values():
        for kind in node.connection_kinds():
            uses.setdefault(kind, []).append(f"`{node.type}`")
    for kind, cls in _auth_kinds(registry).items():
        if cls.connection:
            uses.setdefault(cls.connection, []).append(f"auth `{kind}`")
    out = []
    for kind, spec in sorted(registry.connections.items()):
        facts = {}
        if spec.secret_names:
            facts["Secrets (environment variables)"] = ", ".join(f"`{s}`" for s in spec.secret_names)
        if uses.get(kind):
            facts["Used by"] = ", ".join(sorted(uses[kind], key=str.lower))
        example = {"connections": {kind: spec.example or {"kind": kind}}}
        out.append(Entry("connection", kind, "", spec.description, _group(spec.client) if spec.client else "",
                         {"Settings (JSON Schema)": spec.settings}, facts, example, "Example (connections.yaml)"))
    return out


def catalog(registry: Registry) -> Catalog:
    return Catalog(_actions(registry), _triggers(registry), _auth(registry), _connections(registry),
                   dict(registry.broken))


# -- rendering ----------------------------------------------------------------------------------

def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100).rstrip("\n")


SECTIONS = [("actions", "Actions", "action"), ("triggers", "Triggers", "trigger"),
            ("auth", "Auth kinds (Request triggers)", "auth"), ("connections", "Connection kinds", "connection")]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def markdown(cat: Catalog) -> str:
    lines = ["# Nodes, triggers, auth kinds and connection kinds", "",
             f"<!-- generated from the declarations by `{GENERATED_BY}`; do not edit by hand -->", "",
             "Every example below is checked by the test suite: flow snippets through the flow loader, "
             "connection snippets through the connections loader.", ""]
    for attr, heading, _ in SECTIONS:
        entries = getattr(cat, attr)
        lines.append(f"- [{heading}](#{_slug(heading)}) ({len(entries)})")
    lines.append("")
    for attr, heading, _ in SECTIONS:
        lines += [f"## {heading}", ""]
        group = None
        for e in getattr(cat, attr):
            if attr == "actions" and e.group != group:
                group = e.group
                lines += [f"### {group}", ""]
            level = "####" if attr == "actions" else "###"
            lines += [f"{level} `{e.name}`" + (f": {e.title}" if e.title else ""), ""]
            if e.description:
                lines += [e.description.strip(), ""]
            for label, value in e.facts.items():
                lines.append(f"- {label}: {value}")
            if e.facts:
                lines.append("")
            for label, value in e.schemas.items():
                lines += [f"{label}:", "", "```yaml", _yaml(value), "```", ""]
            lines += [f"{e.example_label}:", "", "```yaml", _yaml(e.example), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def listing(cat: Catalog) -> str:
    lines = []
    for e in cat.actions:
        conn = f"  [connection: {e.facts['Connection kind'].replace('`', '')}]" if "Connection kind" in e.facts else ""
        lines.append(f"{e.name:<34} {e.title}{conn}")
    for attr, heading, _ in SECTIONS[1:]:
        lines += ["", f"{heading}:"]
        for e in getattr(cat, attr):
            first = (e.title or e.description).split("\n")[0]
            lines.append(f"  {e.name:<32} {first[:90]}")
    return "\n".join(lines) + "\n"


def describe(cat: Catalog, name: str) -> str | None:
    """Every entry of that name in full (case-insensitive): an action type, a trigger type, an auth
    kind, a connection kind (``stripe`` is both an auth kind and a connection kind)."""
    found = [_describe(e, cat) for e in cat.entries() if e.name.lower() == name.lower()]
    return "\n".join(found) if found else None


def _describe(e: Entry, cat: Catalog) -> str:
    kind = {"action": "", "trigger": " (trigger)", "auth": " (auth kind)", "connection": " (connection kind)"}
    out = [f"{e.name}{kind[e.section]}: {e.title}".rstrip(": "), ""]
    if e.description:
        out += [e.description.strip(), ""]
    for label, value in e.facts.items():
        out.append(f"{label}: {value.replace('`', '')}")
    if e.section == "action" and "Connection kind" in e.facts:
        conn = next((c for c in cat.connections if f"`{c.name}`" == e.facts["Connection kind"]), None)
        if conn is not None:
            out[-1] += f" ({conn.description.strip()})"
            out.append(_yaml({"settings": conn.schemas["Settings (JSON Schema)"]}))
    if e.facts:
        out.append("")
    for label, value in e.schemas.items():
        out += [f"{label.replace('`', '')}:", _yaml(value), ""]
    out += [f"{e.example_label}:", _yaml(e.example)]
    return "\n".join(out) + "\n"


def names(cat: Catalog) -> list[str]:
    return [e.name for e in cat.entries()]
