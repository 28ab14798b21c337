"""`flowrun plan`: a whole-flow dry run. Inputs rendered from the payload, branches walked as they
would be, side effects listed in order, no network, no secret printed."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main

ROOT = Path(__file__).parents[2]
EVENT = ROOT / "examples/order_confirmation/event.json"


def flowrun(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["--state", "unused.db", *args], env=env, catch_exceptions=False)


def test_effects_only_lists_every_side_effect_of_the_order_confirmation_in_order():
    result = flowrun("plan", str(ROOT / "examples/order_confirmation/flow.yaml"), "--input", f"@{EVENT}",
                     "--effects-only")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "plan of order_confirmation: the run would end Succeeded"
    effects = [line.split(": ", 1)[1] for line in lines[1:]]
    assert effects[:3] == [
        "would read with stripe.GetCustomer  [outputs: example]",
        "would read with salesforce.Query  [outputs: example]",
        "would upsert Salesforce Contact where Stripe_Customer_Id__c = cus_NffrFeUfNV2Hib  [outputs: example]"]
    assert sorted(effects[3:5]) == [  # email and sms run side by side: in the order they started
        "would email jenny.rosen@example.com  [outputs: example]",
        "would send SMS to +15555550123  [outputs: example]"]
    assert effects[5:] == ["would reply 200 to the request that started the run  [outputs: example]"]


def test_mocks_from_a_test_file_stand_in_and_the_taken_branch_is_walked():
    result = flowrun("plan", str(ROOT / "examples/order_confirmation/flow.yaml"), "--test",
                     str(ROOT / "examples/order_confirmation/flow.test.yaml") + "::a refused email is caught, reported, "
                                                                                "and fails the run", "--json")
    plan = json.loads(result.output)
    assert plan["status"] == "Failed" and plan["error"]["code"] == "NotificationFailed"
    effects = [e["effect"] for e in plan["effects"]]
    assert "would send SMS to +15550000002" in effects and "would email grace@example.com" in effects
    assert not any("reply" in (e or "") for e in effects)  # the Response's branch is not taken
    steps = {a["action"]: a for a in plan["actions"]}
    assert steps["notify/upsert_contact"]["inputs"]["record"]["Last_Order_Amount__c"] == 12.5
    assert steps["reply"]["status"] == "Skipped" and steps["give_up"]["status"] == "Succeeded"


def test_a_test_whose_mocks_name_actions_the_planned_flow_lacks_is_refused_naming_them(tmp_path):
    """A test of another flow: its mocks would stand in for nothing and the plan would mislead."""
    flow = tmp_path / "other.yaml"
    flow.write_text("name: other\nactions:\n  email: {type: Compose, inputs: 1}\n")
    result = CliRunner().invoke(main, ["--state", "unused.db", "plan", str(flow), "--test",
                                       str(ROOT / "examples/order_confirmation/flow.test.yaml")
                                       + "::a refused email is caught, reported, and fails the run"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"mocks 'customer', 'find_contact', " in result.output and f"which {flow} does not have" in result.output


def test_stripe_amounts_read_as_money(tmp_path):
    flow = tmp_path / "charge.yaml"
    flow.write_text(textwrap.dedent("""\
        name: charge
        actions:
          charge:
            type: stripe.CreatePaymentIntent
            connection: stripe
            inputs: {amount: "{{ triggerBody().cents }}", currency: usd, customer: "{{ triggerBody().customer }}",
                     confirm: true}
          yen:
            type: stripe.CreatePaymentIntent
            connection: stripe
            runAfter: {charge: [Succeeded]}
            inputs: {amount: 500, currency: jpy}
        """))
    (tmp_path / "connections.yaml").write_text("connections:\n  stripe: {kind: stripe, secrets: {api_key: PLAN_STRIPE_KEY}}\n")
    result = flowrun("plan", str(flow), "--input", '{"cents": 1200, "customer": "cus_9"}',
                     env={"PLAN_STRIPE_KEY": "sk_live_should_never_print"})
    assert "charge (stripe.CreatePaymentIntent): Succeeded\n    would charge 12.00 USD to cus_9" in result.output
    assert "yen (stripe.CreatePaymentIntent): Succeeded\n    would create a payment intent for 500 JPY" in result.output
    assert "      amount: 1200\n" in result.output  # the inputs, rendered from the payload


def test_a_plan_makes_no_network_call_and_prints_no_secret(tmp_path, recorder):
    recorder.route("POST", "/hooks/sent", json={})
    recorder.start()
    flow = tmp_path / "post.yaml"
    flow.write_text(textwrap.dedent("""\
        name: post
        actions:
          hook:
            type: Http
            connection: hooks
            inputs: {method: POST, uri: "sent?echo={{ triggerBody().echo }}"}
        """))
    secret = 's3"cr\\et-value'
    (tmp_path / "connections.yaml").write_text(
        f"connections:\n  hooks: {{kind: http, settings: {{base_url: '{recorder.url}/hooks/', auth: bearer}}, "
        "secrets: {token: PLAN_TOKEN}}\n")
    for as_json in ([], ["--json"]):
        result = flowrun("plan", str(flow), "--input", json.dumps({"echo": secret}), *as_json,
                         env={"PLAN_TOKEN": secret})
        assert result.exit_code == 0, result.output
        assert "would POST sent?echo=***" in result.output
        assert secret not in result.output and json.dumps(secret)[1:-1] not in result.output
    assert recorder.requests == []


def test_a_wait_and_a_child_flow_are_described_not_done(tmp_path):
    (tmp_path / "child.yaml").write_text("name: child\nactions:\n  x: {type: Compose, inputs: 1}\n")
    flow = tmp_path / "parent.yaml"
    flow.write_text(textwrap.dedent("""\
        name: parent
        actions:
          nap: {type: Wait, inputs: {interval: {count: 3, unit: Day}}}
          child: {type: Workflow, runAfter: {nap: [Succeeded]}, inputs: {flow: child.yaml}}
          after: {type: Compose, runAfter: {child: [Succeeded]}, inputs: "{{ body('child') }}"}
        """))
    result = flowrun("plan", str(flow), "--json")
    plan = json.loads(result.output)
    assert [e["effect"] for e in plan["effects"]] == ["would wait 3 day(s)", "would run the flow child.yaml as a child run"]
    assert plan["status"] == "Succeeded"


def test_bad_arguments_are_one_line():
    result = CliRunner().invoke(main, ["plan", "nowhere.yaml"])
    assert result.exit_code == 2 and "no flow file nowhere.yaml" in result.output
    result = CliRunner().invoke(main, ["plan", str(ROOT / "flows/hello.yaml"), "--test", "nope.test.yaml"])
    assert result.exit_code == 2 and "--test: no test file nope.test.yaml" in result.output
    result = CliRunner().invoke(main, ["plan", str(ROOT / "flows/hello.yaml"), "--test",
                                       str(ROOT / "flows/hello.test.yaml") + "::missing"])
    assert result.exit_code == 2 and "has no test 'missing'" in result.output


def test_an_input_the_trigger_would_refuse_is_one_clear_error():
    result = CliRunner().invoke(main, ["plan", str(ROOT / "flows/hello.yaml"), "--input", '{"name": 7}'])
    assert result.exit_code == 2 and "--input does not match the trigger's schema" in result.output


def test_the_bi_refresh_plan_names_the_refresh_and_the_mail_and_stands_in_a_file_for_the_export():
    result = flowrun("plan", str(ROOT / "examples/bi_refresh/flow.yaml"), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["status"] == "Succeeded"
    assert [(e["action"], e["effect"]) for e in plan["effects"]][:2] == [
        ("refresh", "would start a full extract refresh of Tableau data source ds-orders and wait for the job"),
        ("export", None)]
    assert plan["effects"][2]["effect"].startswith("would email cfo@acme.example, sales-leads@acme.example")
    mail = {a["action"]: a for a in plan["actions"]}["email"]["inputs"]
    assert mail["attachments"][0]["file"]["contentType"] == "application/pdf"  # the example's file reference


def test_the_geo_enrich_plan_geocodes_from_the_example_and_upserts_only_the_addresses_found():
    result = flowrun("plan", str(ROOT / "examples/geo_enrich/flow.yaml"), "--input",
                     f"@{ROOT / 'examples/geo_enrich/orders.json'}", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["status"] == "Succeeded"
    assert plan["effects"][0] == {"action": "geocode", "type": "geo.GeocodeMany", "effect": None, "outputs": "example"}
    upserts = [e["effect"] for e in plan["effects"] if e["type"] == "salesforce.Upsert"]
    assert len(upserts) == 1 and upserts[0].startswith("would upsert Salesforce Order")


# -- every node says what a plan would do ------------------------------------------------------
def builtin_nodes():
    from engine.registry import default_registry

    return sorted((n for n in default_registry().nodes.values() if n.__module__.startswith("nodes.")),
                  key=lambda n: n.type)


def test_every_builtin_node_with_a_connection_or_an_effect_declares_which_it_is():
    """A node that talks to a vendor either declares its ``effect`` (a "would ..." line from its
    own example's inputs, or None when those inputs only read) or ``reads_only``, never both and never neither; and its example outputs
    (what the plan stands in) have the shape of its declared outputs."""
    import jsonschema

    checked = []
    for node in builtin_nodes():
        if not (node.connection or node.has_effect()):
            assert not node.reads_only, f"{node.type} reads through no connection"
            continue
        checked.append(node.type)
        assert node.has_effect() != node.reads_only, f"{node.type}: declare effect() or reads_only, one of them"
        if node.has_effect():
            line = node.effect((node.example or {}).get("inputs") or {})
            assert line is None or line.startswith("would "), (node.type, line)  # None: these inputs read
        if node.outputs:
            jsonschema.validate(node.example_output(), node.outputs)
    assert {"tableau.RefreshExtract", "tableau.ExportView", "looker.RenderDashboard", "looker.RunLook",
            "geo.GeocodeMany", "geo.Geocode", "stripe.GetCustomer", "twilio.SendSms"} <= set(checked)


def test_the_bi_refresh_plan_names_the_tableau_refresh_and_the_mail():
    result = flowrun("plan", str(ROOT / "examples/bi_refresh/flow.yaml"), "--json")
    plan = json.loads(result.output)
    assert plan["status"] == "Succeeded", plan
    assert [(e["action"], e["effect"]) for e in plan["effects"]][:2] == [
        ("refresh", "would start a full extract refresh of Tableau data source ds-orders and wait for the job"),
        ("export", None)]  # a read: its example outputs (a PDF reference) stand in
    steps = {a["action"]: a for a in plan["actions"]}
    assert steps["email"]["inputs"]["attachments"][0]["file"]["name"] == "sales.pdf"
    assert plan["effects"][2]["effect"].startswith("would email cfo@acme.example, sales-leads@acme.example")


def test_the_geo_enrich_plan_geocodes_then_upserts_with_the_example_coordinates():
    result = flowrun("plan", str(ROOT / "examples/geo_enrich/flow.yaml"), "--input",
                     f"@{ROOT / 'examples/geo_enrich/orders.json'}", "--json")
    plan = json.loads(result.output)
    assert plan["status"] == "Succeeded", plan
    assert [e["effect"] for e in plan["effects"]] == [
        None, "would upsert Salesforce Order where Order_Number__c = SO-1001",
        "would reply 200 to the request that started the run"]
    steps = {a["action"]: a for a in plan["actions"]}
    assert steps["upsert[0]/coordinates"]["inputs"]["record"]["Shipping_Country_Code__c"] == "DE"


def test_a_looker_render_is_an_effect_in_the_plan(tmp_path):
    flow = tmp_path / "render.yaml"
    flow.write_text(textwrap.dedent("""\
        name: render
        actions:
          render:
            type: looker.RenderDashboard
            connection: looker
            inputs: {dashboardId: "17", format: png}
          look:
            type: looker.RunLook
            connection: looker
            inputs: {lookId: 42}
        """))
    conns = tmp_path / "connections.yaml"
    conns.write_text("connections:\n  looker:\n    kind: looker\n    settings: {base_url: 'https://acme.looker.example'}\n"
                     "    secrets: {client_id: LOOKER_ID, client_secret: LOOKER_SECRET}\n")
    result = CliRunner().invoke(main, ["--state", "unused.db", "--connections", str(conns), "plan", str(flow), "--json"],
                                catch_exceptions=False)
    plan = json.loads(result.output)
    assert {e["action"]: e["effect"] for e in plan["effects"]} == {
        "render": "would create a Looker render task of dashboard 17 as png and wait for it", "look": None}


def test_an_effect_line_reads_any_inputs_and_stays_one_printable_line():
    """`flowrun plan` renders inputs from a payload it does not control: each node's effect line
    takes whatever they hold (wrong types, nulls, huge or control-character text) and is one
    bounded, printable line."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from engine.dryrun import effect_line

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=300)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                max_size=4), max_leaves=12)
    nodes = [n for n in builtin_nodes() if n.has_effect()]

    keys = sorted({k for n in nodes for k in (n.input_schema.get("properties") or {})} | {"x"})

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(keys), values, max_size=6))
    def check(inputs):
        for node in nodes:
            line = effect_line(node, inputs)
            assert line is None or (line.startswith("would ") and line.isprintable() and len(line) <= 300), (
                node.type, line)

    check()


def test_a_payload_cannot_forge_plan_lines_or_send_terminal_escapes(tmp_path):
    flow = tmp_path / "echo.yaml"
    flow.write_text(textwrap.dedent("""\
        name: echo
        actions:
          call:
            type: Http
            inputs: {method: POST, uri: "https://api.example.invalid/{{ triggerBody().path }}"}
        """))
    forged = "x\n  2. other: would read with nothing  [outputs: example]\n\x1b[2J\x1b[31mred\u202e"
    result = flowrun("plan", str(flow), "--input", json.dumps({"path": forged}), "--effects-only")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[1].startswith("  1. call: would POST https://api.example.invalid/x 2. other:")
    assert "\x1b" not in result.output and "\u202e" not in result.output and "\\x1b[2J" in result.output
    full = flowrun("plan", str(flow), "--input", json.dumps({"path": forged})).output
    assert full.splitlines()[1:4] == ["call (Http): Succeeded",
                                      "    would POST https://api.example.invalid/x 2. other: would read with nothing "
                                      "[outputs: example] \\x1b[2J\\x1b[31mred\\u202e  [outputs: example]",
                                      "    inputs:"]
    assert len(full.splitlines()) == 6  # the inputs: method and uri, one line each
    assert "\x1b" not in full and "\u202e" not in full and "\n  2. other" not in full
    data = json.loads(flowrun("plan", str(flow), "--input", json.dumps({"path": forged}), "--json").output)
    assert "\n" not in data["effects"][0]["effect"]


# -- the text plan: each action, its inputs, the branches taken ------------------------------------
def test_the_plan_shows_each_action_in_run_order_with_its_rendered_inputs_and_effect():
    result = flowrun("plan", str(ROOT / "examples/order_confirmation/flow.yaml"), "--input", f"@{EVENT}")
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("plan of order_confirmation: the run would end Succeeded\n"
                           "customer (stripe.GetCustomer): Succeeded\n"
                           "    would read with stripe.GetCustomer  [outputs: example]\n"
                           "    inputs:\n"
                           "      customer: ")
    names = [line.split(" (")[0].strip() for line in text.splitlines()[1:] if not line.startswith("    ")]
    assert names[:4] == ["customer", "notify", "notify/find_contact", "notify/upsert_contact"]
    assert sorted(names[4:6]) == ["notify/email", "notify/sms"]  # side by side: in the order they started
    assert names[6:] == ["alert", "give_up", "reply"]
    assert ("  notify/upsert_contact (salesforce.Upsert): Succeeded\n"
            "      would upsert Salesforce Contact where Stripe_Customer_Id__c = cus_NffrFeUfNV2Hib  [outputs: example]\n"
            "      inputs:\n") in text
    assert '          Last_Order_Amount__c: 42.0\n' in text  # 4200 cents, rendered by the flow's template
    assert "alert (Compose): Skipped\n" in text  # not run: no inputs shown


BRANCHES = """\
name: branches
actions:
  check:
    type: If
    expression: "{{ triggerBody().vip }}"
    actions:
      vip: {type: Compose, inputs: "vip {{ triggerBody().name }}"}
    else:
      actions:
        plain: {type: Compose, inputs: plain}
  route:
    type: Switch
    runAfter: {check: [Succeeded]}
    expression: "{{ triggerBody().tier }}"
    cases:
      gold: {case: gold, actions: {g: {type: Compose, inputs: gold}}}
    default: {actions: {d: {type: Compose, inputs: other}}}
  each:
    type: Foreach
    runAfter: {route: [Succeeded]}
    foreach: "{{ triggerBody().items }}"
    actions:
      post:
        type: Http
        inputs: {method: POST, uri: "https://example.invalid/items", body: {item: "{{ item() }}", note: "{{ triggerBody().note }}"}}
"""


def test_the_plan_names_the_branch_each_condition_takes_and_shows_a_loops_first_iteration(tmp_path):
    flow = tmp_path / "branches.yaml"
    flow.write_text(BRANCHES)
    body = {"vip": False, "tier": "gold", "items": list(range(1, 13)), "note": "n" * 300, "name": "Ada"}
    result = flowrun("plan", str(flow), "--input", json.dumps(body))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "check (If): Succeeded, took its 'else' branch"
    assert "  check/plain (Compose): Succeeded" in lines and not any("check/vip" in line for line in lines)
    assert "route (Switch): Succeeded, took its 'case:gold' branch" in lines
    assert "  route/g (Compose): Succeeded" in lines and not any("route/d" in line for line in lines)
    assert "each (Foreach): Succeeded, 12 iteration(s), the first shown" in lines
    assert "        - 10" in lines and "        ... 2 more item(s)" in lines  # a long list is counted
    assert "  each[0]/post (Http): Succeeded" in lines and not any("each[1]" in line for line in lines)
    assert "      would POST https://example.invalid/items  [outputs: example]" in lines
    assert f'          note: "{"n" * 99}... [302 chars]' in lines  # a long value is cut, and says so
    assert lines[-1] == ("  ... 11 more iteration(s) not shown (11 step(s), 11 side effect(s); "
                         "--effects-only lists them all)")
    every = flowrun("plan", str(flow), "--input", json.dumps(body), "--effects-only").output.splitlines()
    assert len(every) == 13 and every[12].startswith(" 12. each[11]/post: would POST")


def test_deep_and_hostile_input_values_print_folded_and_escaped(tmp_path):
    flow = tmp_path / "deep.yaml"
    flow.write_text("name: deep\nactions:\n  keep: {type: Compose, inputs: \"{{ triggerBody() }}\"}\n")
    body = {"a": {"b": {"c": {"d": 1}}}, "line\nbreak\x1b[2J": "v\u202e", "list": [[[1, 2]]]}
    result = flowrun("plan", str(flow), "--input", json.dumps(body))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert '      "line\\nbreak\\u001b[2J": "v\\u202e"' in result.output.splitlines()
    assert "          c: {1 key(s)}" in result.output.splitlines()
    assert "          - [2 item(s)]" in result.output.splitlines()


def test_a_plan_never_runs_a_node_whose_transport_the_guard_cannot_see(tmp_path):
    """A third-party node that works in a child process, with no connection and no effect
    declared: the plan stands its example outputs in; the same flow, run, does write the file."""
    import anyio

    import nodes.core
    from engine.api import Engine
    from engine.clock import VirtualClock
    from engine.dryrun import dry_run
    from engine.registry import Registry
    from tests.plugins import flowrun_contract

    registry = Registry()
    for module in (nodes.core, flowrun_contract):
        registry.add_module(module)
    marker = tmp_path / "ran.txt"
    flow_file = tmp_path / "spawn.yaml"
    flow_file.write_text(textwrap.dedent(f"""\
        name: spawn
        actions:
          write: {{type: contract.Spawn, inputs: {{path: "{marker}"}}}}
          after: {{type: Compose, runAfter: {{write: [Succeeded]}}, inputs: "{{{{ body('write').written }}}}"}}
        """))
    engine = Engine(tmp_path / "plan.db", registry=registry, clock=VirtualClock())
    try:
        plan = anyio.run(lambda: dry_run(engine, engine.load(flow_file)))
    finally:
        engine.close()
    assert plan.status == "Succeeded" and not marker.exists()
    assert [(e.path, e.effect, e.stood_in) for e in plan.effects] == [("write", None, "example")]
    assert {a["action"]: a["outputs"] for a in plan.actions}["after"] == "example.txt"
    engine = Engine(tmp_path / "run.db", registry=registry)
    try:
        run = anyio.run(lambda: engine.run(engine.load(flow_file)))
    finally:
        engine.close()
    assert str(run.status) == "Succeeded" and marker.read_text() == "ran"
