"""The W3C trace context through SQS message attributes: aws.sqs.SendMessage adds its attempt
span's ``traceparent`` (when the message has room: SQS takes 10 attributes); the aws.sqs.Queue
trigger makes a received message's the parent of its run."""
from __future__ import annotations

import json

from tests.listener.inprocess import wait_for
from tests.support.tracing import REMOTE, traceparent, traced

from .conftest import action
from .test_sqs_trigger import finished, send, serve


def test_send_message_adds_the_attempt_spans_traceparent_as_a_message_attribute(moto, aws_run):
    url, _ = moto.queue("traced")
    full = {f"a{i}": i for i in range(10)}
    with traced() as spans:
        one = aws_run({"one": action("aws.sqs.SendMessage", {"queue": url, "message": {
            "body": "x", "attributes": {"kind": "o"}}})})
        batch = aws_run({"batch": action("aws.sqs.SendMessage", {"queue": url, "messages": [
            {"body": "y"}, {"body": "z", "attributes": {"traceparent": REMOTE}}, {"body": "full", "attributes": full}]})})
    assert one.status == batch.status == "Succeeded", (one.error, batch.error)
    got = {m["Body"]: {k: a.get("StringValue") for k, a in m.get("MessageAttributes", {}).items()}
           for m in moto.drain(url)}
    [one_span], [batch_span] = spans.named("one"), spans.named("batch")
    assert got["x"] == {"kind": "o", "traceparent": traceparent(one_span)}
    assert got["y"] == {"traceparent": traceparent(batch_span)}
    assert got["z"] == {"traceparent": REMOTE}  # a flow's own is kept
    assert got["full"] == {k: str(v) for k, v in full.items()}  # ten already: SQS takes no eleventh


def test_without_tracing_send_message_adds_no_attribute(moto, aws_run):
    url, _ = moto.queue("untraced")
    run = aws_run({"one": action("aws.sqs.SendMessage", {"queue": url, "message": {"body": "x"}})})
    assert run.status == "Succeeded", run.error
    [m] = moto.drain(url)
    assert "MessageAttributes" not in m


def test_a_received_messages_traceparent_is_the_parent_of_its_runs_span(tmp_path, monkeypatch, moto):
    url, _ = moto.queue("traced-in")
    send(moto, url, {"n": 1}, MessageAttributes={"traceparent": {"DataType": "String", "StringValue": REMOTE}})
    send(moto, url, {"n": 2})
    with traced() as spans, serve(tmp_path, monkeypatch, moto, url) as app:
        runs = wait_for(lambda: finished(app, 2), "two runs")
        wait_for(lambda: len(spans.runs()) == 2, "two run spans")
    by_id = {r["id"]: json.loads(r["payload"])["body"]["n"] for r in runs}
    first, second = sorted(spans.runs(), key=lambda s: by_id[s.attributes["flowrun.run_id"]])
    _, trace, parent, _ = REMOTE.split("-")
    assert (f"{first.context.trace_id:032x}", f"{first.parent.span_id:016x}") == (trace, parent)
    assert second.parent is None


def test_a_message_at_the_size_limit_is_sent_without_the_trace_rather_than_made_too_big(moto, aws_run):
    from nodes.aws.sqs import MAX_BYTES

    url, _ = moto.queue("traced-full")
    with traced():
        run = aws_run({"one": action("aws.sqs.SendMessage", {"queue": url, "message": {"body": "x" * MAX_BYTES}})})
    assert run.status == "Succeeded", run.error
    [m] = moto.drain(url)
    assert len(m["Body"]) == MAX_BYTES and "MessageAttributes" not in m
