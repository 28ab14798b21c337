"""The trigger contract: node modules declare triggers (TRIGGERS), the registry indexes them,
the flow schema is generated from them as a union keyed on `type`, and the engine and the
listener name no built-in trigger or action type."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from engine.errors import FlowError
from engine.loader import load_text
from engine.plugin import PullTrigger, PushTrigger, Trigger
from engine.registry import Registry, default_registry
from engine.schema import flow_schema

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def plugin_registry() -> Registry:
    from tests.listener.inprocess import registry_with

    return registry_with("tests.plugins.flowrun_testplugin")


def test_built_in_triggers_are_plugins_of_nodes_core():
    reg = default_registry()
    core = [t for t in reg.triggers.values() if t.__module__.startswith("nodes.core")]
    assert {t.type: t.mode for t in core} == {"Request": "push", "Recurrence": "pull", "Manual": "manual"}
    assert all(t.__module__ == "nodes.core.triggers" for t in core)
    # the others come from vendor node modules (kafka.Consume ...), registered the same way
    assert all(t.__module__.startswith("nodes.") for t in reg.triggers.values())
    assert issubclass(reg.trigger("request"), PushTrigger) and issubclass(reg.trigger("RECURRENCE"), PullTrigger)


def test_a_trigger_type_declared_twice_is_refused():
    class Again(Trigger):
        type = "Request"

    reg = Registry()
    reg.add_module(types.SimpleNamespace(__name__="a", TRIGGERS=[default_registry().trigger("Request")]))
    with pytest.raises(ValueError, match="trigger type 'Request' is declared twice"):
        reg.add_module(types.SimpleNamespace(__name__="b", TRIGGERS=[Again]))


def test_the_flow_schema_has_one_branch_per_declared_trigger_type():
    schema = flow_schema(plugin_registry())
    union = schema["$defs"]["trigger"]
    enum = union["properties"]["type"]["enum"]
    assert enum == sorted(k.split(":", 1)[1] for k in schema["$defs"] if k.startswith("trigger:"))
    assert {"Manual", "Recurrence", "Request", "testplugin.FileFeed", "testplugin.Mailbox"} <= set(
        union["properties"]["type"]["enum"])
    feed = schema["$defs"]["trigger:testplugin.FileFeed"]
    assert feed["required"] == ["path"] and "auth" not in feed["properties"]  # a pull trigger takes no auth
    mailbox = schema["$defs"]["trigger:testplugin.Mailbox"]  # declares a connection kind: names a connection
    assert mailbox["required"] == ["connection"] and "testplugin.mailbox" in mailbox["properties"]["connection"]["description"]
    request = schema["$defs"]["trigger:Request"]
    assert request["required"] == ["auth"] and {"auth", "dedupe", "inputs"} <= set(request["properties"])


@pytest.mark.parametrize("trigger, expected", [
    ("type: Requets\nauth: {type: none}", "triggers.t.type: unknown trigger type 'Requets' (did you mean 'Request'?)"),
    ("type: Recurrence", "triggers.t: 'recurrence' is required"),
    ("type: Request\nauth: {type: none}\nrecurrence: {cron: '* * * * *'}",
     "triggers.t.recurrence: unknown key 'recurrence'"),
    ("type: testplugin.FileFeed\npath: /tmp/x.jsonl\npace: -1", "triggers.t.pace: -1 is less than the minimum of 0"),
])
def test_trigger_definitions_are_checked_against_their_declaration(trigger, expected):
    text = "actions:\n  a: {type: Compose, inputs: 1}\ntriggers:\n  t:\n" + "".join(
        f"    {line}\n" for line in trigger.splitlines())
    with pytest.raises(FlowError) as err:
        load_text(text, "f.yaml", registry=plugin_registry())
    assert [str(p).split(" ", 1)[1] for p in err.value.problems] == [expected]


def test_the_engine_names_no_built_in_trigger_or_action_type():
    import nodes.core
    import nodes.http

    names = {t.type for t in nodes.core.TRIGGERS} | {n.type for n in nodes.core.NODES + nodes.http.NODES}
    pattern = re.compile("[\"'](" + "|".join(names) + ")[\"']")
    offenders = [f"{f.relative_to(ENGINE.parent)}:{i}" for f in ENGINE.rglob("*.py")
                 for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
