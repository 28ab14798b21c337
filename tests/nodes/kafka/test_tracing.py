"""The W3C trace context through Kafka message headers: kafka.Produce adds its attempt span's
``traceparent`` to each message; the kafka.Consume trigger makes a message's the parent of its run."""
from __future__ import annotations

import json

from tests.listener.inprocess import serving, wait_for
from tests.support.tracing import REMOTE, traceparent, traced

from .test_consume import done, flows
from .test_produce import run


def test_produce_sends_the_attempt_spans_traceparent_in_each_messages_headers(tmp_path, kafka_cluster):
    topic = kafka_cluster.topic("traced")
    with traced() as spans:
        result = run(tmp_path, kafka_cluster, {"topic": topic, "messages": [
            {"value": {"n": 1}, "headers": {"source": "flowrun"}},
            {"value": {"n": 2}, "headers": {"traceparent": REMOTE}},  # a flow's own is kept
            {"value": {"n": 3}}]})
    assert result.status == "Succeeded", result.error
    [send] = spans.named("send")
    by_n = {json.loads(m.value())["n"]: dict(m.headers()) for m in kafka_cluster.read(topic, 3)}  # any partitions
    assert by_n[1] == {"source": b"flowrun", "traceparent": traceparent(send).encode()}
    assert by_n[2] == {"traceparent": REMOTE.encode()}
    assert by_n[3] == {"traceparent": traceparent(send).encode()}


def test_without_tracing_produce_adds_no_header(tmp_path, kafka_cluster):
    topic = kafka_cluster.topic("untraced")
    result = run(tmp_path, kafka_cluster, {"topic": topic, "value": 1})
    assert result.status == "Succeeded", result.error
    [msg] = kafka_cluster.read(topic, 1)
    assert msg.headers() is None


def test_a_consumed_messages_traceparent_is_the_parent_of_its_runs_span(tmp_path, monkeypatch, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("traced-in"), 1)
    kafka_cluster.produce(topic, [json.dumps({"id": 1}).encode()], headers=[("traceparent", REMOTE.encode()),
                                                                         ("tracestate", b"k=v")])
    kafka_cluster.produce(topic, [json.dumps({"id": 2}).encode()], headers=[("traceparent", b"garbage")])
    folder = flows(tmp_path, kafka_cluster, "orders", {"topics": [topic], "groupId": f"g-{topic}"})
    with traced() as spans, serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "orders", 2), "two runs")
        wait_for(lambda: len(spans.runs()) == 2, "two run spans")
        rows = app.runs("orders")
    first, second = sorted(spans.runs(), key=lambda s: json.loads(
        next(r for r in rows if r["id"] == s.attributes["flowrun.run_id"])["payload"])["body"]["id"])
    _, trace, parent, _ = REMOTE.split("-")
    assert (f"{first.context.trace_id:032x}", f"{first.parent.span_id:016x}") == (trace, parent)
    assert first.context.trace_state.to_header() == "k=v"
    assert second.parent is None  # a malformed one is ignored
