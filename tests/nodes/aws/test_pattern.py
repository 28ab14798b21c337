"""The documented pattern (README, "Events: AWS"): a flow publishes to EventBridge, a rule
targets an SQS queue, and an SQS-triggered flow runs once per event."""
from __future__ import annotations

import json

import yaml

import engine
from tests.listener.inprocess import serving, wait_for
from tests.support.moto import KEY_ID, connections_yaml

from .conftest import SECRET

def publisher(bus: str) -> dict:
    return {"name": "checkout", "triggers": {"manual": {"type": "Manual"}},
            "actions": {"publish": {"type": "aws.eventbridge.PutEvents", "connection": "aws", "inputs": {
                "busName": bus,
                "entries": [{"source": "com.example.shop", "detailType": "OrderPaid",
                             "detail": {"orderId": "{{ triggerBody().orderId }}",
                                        "total": "{{ triggerBody().total }}"}}]}}}}

CONSUMER = """\
name: fulfil
triggers:
  paid:
    type: aws.sqs.Queue
    connection: aws
    queue: {queue}
    waitTimeSeconds: 1
    deleteAfter: succeeded
actions:
  ship:
    type: Compose
    inputs:
      order: "{{{{ triggerBody().detail.orderId }}}}"
      event: "{{{{ triggerBody().id }}}}"
      type: "{{{{ triggerBody()['detail-type'] }}}}"
outputs:
  shipped: {{value: "{{{{ outputs('ship') }}}}"}}
"""


def test_an_eventbridge_rule_targeting_sqs_feeds_an_sqs_triggered_flow(tmp_path, monkeypatch, moto):
    monkeypatch.setenv("TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET)
    bus, rule = moto.name("shop"), moto.name("paid")
    queue, _ = moto.queue("fulfil")
    moto.events.create_event_bus(Name=bus)
    moto.events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(
        {"source": ["com.example.shop"], "detail-type": ["OrderPaid"]}))
    moto.events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "fulfil", "Arn": moto.arn(queue)}])

    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "connections.yaml").write_text(connections_yaml(moto.url))
    (folder / "fulfil.yaml").write_text(CONSUMER.format(queue=queue))
    checkout = tmp_path / "checkout.yaml"
    checkout.write_text(yaml.safe_dump(publisher(bus)))
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        published = [engine.run_file(checkout, input={"orderId": f"O-{i}", "total": i}, state=tmp_path / "pub.db",
                                     connections=folder / "connections.yaml") for i in range(3)]
        runs = wait_for(lambda: [r for r in app.runs("fulfil") if r["status"] == "Succeeded"][2:] and
                        app.runs("fulfil"), "a run per event")
        wait_for(lambda: moto.count(queue) == 0, "the queue emptied")
    event_ids = [p.steps["publish"].outputs["entries"][0]["eventId"] for p in published]
    shipped = sorted((json.loads(r["outputs"])["shipped"] for r in runs), key=lambda s: s["order"])
    assert shipped == [{"order": f"O-{i}", "event": event_ids[i], "type": "OrderPaid"} for i in range(3)]
