"""aws.eventbridge.PutEvents against moto: what boto3 sends, rules routing to SQS, batches,
CloudEvents envelopes, and the retry of only the entries a partial failure lists."""
from __future__ import annotations

import json

import pytest

from tests.support.aws_faults import PartialFailures

from .conftest import SECRET, action


def bus_to_queue(moto, pattern: dict | None = None, bus: str | None = None) -> str:
    """A queue that a rule on ``bus`` (the default bus if None) fills with matching events."""
    url, _ = moto.queue("events")
    if bus:
        moto.events.create_event_bus(Name=bus)
    rule = moto.name("rule")
    moto.events.put_rule(Name=rule, EventBusName=bus or "default",
                         EventPattern=json.dumps(pattern or {"source": [moto.name("src")]}))
    moto.events.put_targets(Rule=rule, EventBusName=bus or "default", Targets=[{"Id": "q", "Arn": moto.arn(url)}])
    return url


def test_entries_reach_the_bus_and_a_rule_routes_them_to_sqs_with_an_event_id_each(moto, aws_run):
    bus = moto.name("bus")
    url = bus_to_queue(moto, {"source": ["com.example.shop"]}, bus=bus)
    run = aws_run({"put": action("aws.eventbridge.PutEvents", {
        "busName": bus,
        "entries": [{"source": "com.example.shop", "detailType": "OrderPaid",
                     "detail": {"orderId": "{{ triggerBody().id }}", "total": 12.5},
                     "resources": ["arn:aws:s3:::bucket"], "traceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793"},
                    {"source": "com.example.other", "detailType": "Ignored", "detail": {}}]})},
        input={"id": "O-1"})
    assert run.status == "Succeeded", run.error
    out = run.steps["put"].outputs
    assert out["failedCount"] == 0 and len(out["entries"]) == 2
    assert all(e["eventId"] and e["attempts"] == 1 for e in out["entries"])
    got = [json.loads(m["Body"]) for m in moto.drain(url)]
    assert len(got) == 1  # the rule matched the shop's event only
    assert got[0]["id"] == out["entries"][0]["eventId"]
    assert got[0]["detail-type"] == "OrderPaid" and got[0]["source"] == "com.example.shop"
    assert got[0]["detail"] == {"orderId": "O-1", "total": 12.5}
    assert got[0]["resources"] == ["arn:aws:s3:::bucket"]


def test_cloud_events_wraps_each_detail_in_a_cloudevents_1_0_envelope_with_a_stable_id(moto, aws_run):
    url = bus_to_queue(moto, {"source": ["com.example.ce"]})
    actions = {"put": action("aws.eventbridge.PutEvents", {"cloudEvents": True, "entries": [
        {"source": "com.example.ce", "detailType": "OrderPaid", "detail": {"n": 1}},
        {"source": "com.example.ce", "detailType": "OrderShipped", "detail": {"n": 2}, "id": "my-id",
         "time": "2026-01-02T03:04:05Z"}]})}
    run = aws_run(actions)
    assert run.status == "Succeeded", run.error
    details = sorted((json.loads(m["Body"])["detail"] for m in moto.drain(url)), key=lambda d: d["data"]["n"])
    first, second = details
    assert {k: first[k] for k in ("specversion", "source", "type", "datacontenttype", "data")} == {
        "specversion": "1.0", "source": "com.example.ce", "type": "OrderPaid",
        "datacontenttype": "application/json", "data": {"n": 1}}
    assert first["id"] and first["time"].endswith("Z")
    assert second["id"] == "my-id" and second["time"] == "2026-01-02T03:04:05Z"


def test_more_than_ten_entries_go_in_requests_of_ten_and_256_kb_at_most(moto, aws_run):
    with PartialFailures(moto.url) as proxy:
        big = "x" * 100_000
        entries = [{"source": "com.example.batch", "detailType": "T", "detail": {"i": i}} for i in range(23)]
        entries += [{"source": "com.example.batch", "detailType": "Big", "detail": {"pad": big}} for _ in range(5)]
        run = aws_run({"put": action("aws.eventbridge.PutEvents", {"entries": entries})}, endpoint=proxy.url)
        assert run.status == "Succeeded", run.error
        sizes = [len(sent) for target, sent in proxy.sent if target == "AWSEvents.PutEvents"]
    assert sizes == [10, 10, 5, 2, 1]  # 23 small: 10+10+3 (+2 big: 256 KB), then 2 big a request (of 100 KB each)
    assert len(run.steps["put"].outputs["entries"]) == 28


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalFailure"])
def test_only_the_failed_entries_are_sent_again_with_backoff_until_they_pass(moto, aws_run, code):
    url = bus_to_queue(moto, {"source": ["com.example.retry"]})
    with PartialFailures(moto.url) as proxy:
        proxy.fail("AWSEvents.PutEvents", {1, 3}, code)        # first call: entries 1 and 3 fail
        proxy.fail("AWSEvents.PutEvents", {0}, code)           # second call (1, 3): entry 1 fails again
        entries = [{"source": "com.example.retry", "detailType": "T", "detail": {"i": i}} for i in range(5)]
        run = aws_run({"put": action("aws.eventbridge.PutEvents",
                                     {"entries": entries, "retry": {"delay": 0.001}})}, endpoint=proxy.url)
        sent = [[json.loads(e["Detail"])["i"] for e in s] for t, s in proxy.sent]
    assert run.status == "Succeeded", run.error
    assert sent == [[0, 2, 4], [3], [1]]  # each retry carries only what failed
    assert [e["attempts"] for e in run.steps["put"].outputs["entries"]] == [1, 3, 1, 2, 1]
    delivered = sorted(json.loads(m["Body"])["detail"]["i"] for m in moto.drain(url))
    assert delivered == [0, 1, 2, 3, 4]  # each exactly once


def test_entries_that_still_fail_are_reported_per_entry_and_fail_the_action_unless_allow_partial(moto, aws_run):
    entries = [{"source": "com.example.partial", "detailType": "T", "detail": {"i": i}} for i in range(3)]
    for allow in (False, True):
        with PartialFailures(moto.url) as proxy:
            proxy.fail("AWSEvents.PutEvents", {1}, "ThrottlingException")  # entry 1 of the first call
            proxy.fail("AWSEvents.PutEvents", {0}, "ThrottlingException", times=10)  # then of each retry
            run = aws_run({"put": action("aws.eventbridge.PutEvents", {
                "entries": entries, "allowPartial": allow, "retry": {"count": 2, "delay": 0.001}})},
                endpoint=proxy.url)
            calls = len(proxy.sent)
        assert calls == 3  # the first call and two retries of entry 1
        step = run.steps["put"]
        if allow:
            assert run.status == "Succeeded"
            out = step.outputs
        else:
            assert run.status == "Failed" and step.error["code"] == "PartialFailure"
            assert "1 of 3 entries failed (entry 1: ThrottlingException" in step.error["message"]
            out = step.error["details"]
        assert out["failedCount"] == 1
        assert out["entries"][1] == {"attempts": 3, "errorCode": "ThrottlingException", "errorMessage": "Rate exceeded"}
        assert out["entries"][0]["eventId"] and out["entries"][2]["eventId"]


def test_a_partial_failure_that_is_not_retryable_is_not_sent_again(moto, aws_run):
    # moto itself fails an entry whose Detail is not a JSON object's text: MalformedDetail is final
    with PartialFailures(moto.url) as proxy:
        proxy.fail("AWSEvents.PutEvents", {0}, "InvalidArgument")
        run = aws_run({"put": action("aws.eventbridge.PutEvents", {"allowPartial": True, "entries": [
            {"source": "com.example.final", "detailType": "T", "detail": {"i": 0}},
            {"source": "com.example.final", "detailType": "T", "detail": {"i": 1}}]})}, endpoint=proxy.url)
        assert len(proxy.sent) == 1
    assert run.steps["put"].outputs["entries"][0]["errorCode"] == "InvalidArgument"


def test_an_entry_over_256_kb_fails_clearly_before_anything_is_sent(moto, aws_run):
    with PartialFailures(moto.url) as proxy:
        run = aws_run({"put": action("aws.eventbridge.PutEvents", {"entries": [
            {"source": "s", "detailType": "T", "detail": {"i": 0}},
            {"source": "s", "detailType": "T", "detail": {"pad": "x" * 300_000}}]})}, endpoint=proxy.url)
        assert proxy.sent == []
    assert run.status == "Failed"
    assert run.steps["put"].error["code"] == "EntryTooLarge"
    assert "entry 1 is 300" in run.steps["put"].error["message"]


def test_an_unknown_bus_is_a_terminal_error_with_the_aws_code_and_no_secret(moto, aws_run):
    run = aws_run({"put": action("aws.eventbridge.PutEvents", {"busName": "no-such-bus", "entries": [
        {"source": "s", "detailType": "T", "detail": {}}]}, retryPolicy={"type": "fixed", "count": 3,
                                                                        "interval": "PT0.01S"})})
    step = run.steps["put"]
    assert run.status == "Failed" and step.attempts == 1
    assert step.error["code"] == "ResourceNotFoundException"
    assert "no-such-bus" in step.error["message"]
    assert SECRET not in json.dumps(run.to_json(), ensure_ascii=False)
