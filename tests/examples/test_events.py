"""examples/events: the demo, run as its one command in a subprocess with hostile secrets, carries
one Stripe payment through EventBridge, an EventBridge rule, SQS, Kafka, Kinesis and Event Grid
(moto, librdkafka's mock cluster and the Event Grid fake on loopback, three flows under a real
`flowrun serve`); every hop carries the ids of the hops before it, and no secret is written down."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# secrets as hostile as a vault may hand out: quotes, a backslash, / + % and non-ASCII (the AWS
# key id goes into SigV4's Credential=<id>/<scope>, which has no escaping: AWS's ids are [A-Z0-9])
SECRETS = {"STRIPE_WEBHOOK_SECRET": "whsec_s't\"r\\i/p+e%ü", "AWS_DEMO_ACCESS_KEY_ID": "AKIAEVENTSDEMO000042",
           "AWS_DEMO_SECRET_ACCESS_KEY": "fAk3\"se'cr\\et/+%é", "EVENTGRID_TOPIC_KEY": "eg\"Topic\\Key'/+%é=="}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("moto")
    pytest.importorskip("confluent_kafka")
    work = tmp_path_factory.mktemp("events")
    out = subprocess.run([sys.executable, "examples/events/demo.py", "--work", str(work)], cwd=ROOT,
                         env={**os.environ, **SECRETS}, capture_output=True, text=True, timeout=300)
    chain = json.loads((work / "chain.json").read_text()) if (work / "chain.json").exists() else None
    return out, chain, work


def test_the_demo_is_one_command_that_exits_0_and_prints_every_hop(demo):
    out, chain, _ = demo
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    kafka, [record], [event] = chain["kafka"], chain["kinesis"]["records"], chain["eventGrid"]["events"]
    for line in (f"event {chain['webhook']['stripeEvent']}", f"EventBridge event {chain['eventBridge']['eventId']}",
                 f"SQS         message {chain['sqs']['messageId']}",
                 f"{kafka['topic']} partition {kafka['partition']} offset {kafka['offset']}",
                 f"{record['shardId']} sequence {record['sequenceNumber']}", f"CloudEvent {event['id']}",
                 "the chain is whole"):
        assert line in out.stdout


def test_the_webhook_starts_one_run_a_retry_finds_it_and_a_forged_signature_is_refused(demo):
    _, chain, _ = demo
    hook = chain["webhook"]
    assert (hook["status"], hook["stripeEvent"]) == (200, "evt_3PbEvents9OrderPaid")
    [paid] = chain["runs"]["order_paid"]
    assert paid["runId"] == hook["runId"] == chain["webhookRetried"]["runId"]
    assert paid["dedupeKey"] == "stripe_event:evt_3PbEvents9OrderPaid"
    assert hook["reply"] == {"received": True, "eventBridgeId": paid["outputs"]["eventBridgeId"]}
    assert chain["webhookForged"]["status"] == 403
    assert chain["serve"]["rejected"] == [{"flow": "order_paid", "reason": "forbidden", "http_status": 403}]


def test_the_rule_routed_the_eventbridge_event_to_sqs_and_its_run_produced_it_to_kafka(demo):
    _, chain, _ = demo
    [fulfil] = chain["runs"]["fulfil_order"]
    [record] = chain["kinesis"]["records"]
    message = chain["sqs"]["messageId"]
    # the SQS run saw the very event PutEvents answered with (EventBridge's envelope, its id)
    assert record["data"]["eventBridgeId"] == chain["runs"]["order_paid"][0]["outputs"]["eventBridgeId"]
    assert fulfil["dedupeKey"] == f"order_paid:{message}" and record["data"]["sqsMessageId"] == message
    assert chain["sqs"]["deadLetters"] == 0
    kafka = chain["kafka"]
    assert fulfil["outputs"] == {"partition": kafka["partition"], "offset": kafka["offset"]}
    assert kafka["topic"] == "acme.orders.paid" and kafka["committed"] == kafka["offset"] + 1


def test_the_kafka_run_wrote_one_kinesis_record_and_one_cloudevent_carrying_the_whole_chain(demo):
    _, chain, _ = demo
    kafka = chain["kafka"]
    [notify] = chain["runs"]["notify_order"]
    assert notify["dedupeKey"] == f"paid:{kafka['topic']}/{kafka['partition']}/{kafka['offset']}"
    [record] = chain["kinesis"]["records"]
    assert record["partitionKey"] == "A-1001"
    where = {"topic": kafka["topic"], "partition": kafka["partition"], "offset": kafka["offset"]}
    assert record["data"] == {"orderId": "A-1001", "amount": 4200, "currency": "EUR",
                              "stripeEvent": "evt_3PbEvents9OrderPaid", "eventBridgeId": chain["eventBridge"]["eventId"],
                              "sqsMessageId": chain["sqs"]["messageId"], "kafka": where}
    [event] = chain["eventGrid"]["events"]
    assert (event["specversion"], event["type"], event["source"], event["subject"]) == (
        "1.0", "Acme.Shop.OrderPaid", "/acme/shop", "orders/A-1001")
    assert event["data"] == {**record["data"], "kinesis": {"shardId": record["shardId"],
                                                           "sequenceNumber": record["sequenceNumber"]}}
    assert notify["outputs"]["eventGridId"] == event["id"]
    assert notify["outputs"]["kinesis"]["sequenceNumber"] == record["sequenceNumber"]


def test_every_run_succeeded_once_and_serve_stopped_cleanly_without_warnings(demo):
    _, chain, _ = demo
    assert {flow: [r["status"] for r in rs] for flow, rs in chain["runs"].items()} == {
        "order_paid": ["Succeeded"], "fulfil_order": ["Succeeded"], "notify_order": ["Succeeded"]}
    assert chain["serve"]["stopped"] and chain["serve"]["problems"] == []


def encodings(secret: str) -> list[bytes]:
    return [secret.encode(), json.dumps(secret)[1:-1].encode(), json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
            base64.b64encode(secret.encode()), urllib.parse.quote(secret).encode(),
            urllib.parse.quote_plus(secret).encode(), secret.encode("unicode_escape")]


def test_no_secret_reaches_the_state_database_the_serve_log_the_chain_or_the_output(demo):
    out, _, work = demo
    files = sorted(p for p in work.iterdir() if p.is_file())
    assert any(p.name == "state.db" for p in files) and any(p.name == "serve.log" for p in files)
    for name, secret in SECRETS.items():
        for path in files:
            data = path.read_bytes()
            assert not any(form in data for form in encodings(secret)), f"{name} in {path.name}"
        assert not any(form.decode(errors="replace") in out.stdout + out.stderr for form in encodings(secret)), name


def test_a_demo_that_cannot_start_says_why_in_one_line_and_exits_1(tmp_path):
    pytest.importorskip("moto")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the work folder should be")
    out = subprocess.run([sys.executable, "examples/events/demo.py", "--work", str(blocker)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert str(blocker) in out.stderr
