"""azure.eventgrid.Publish: the real azure-eventgrid client against a loopback topic
(tests/support/eventgrid.py), asserting on the requests the SDK actually sent."""
from __future__ import annotations

import json
import logging

import pytest
import yaml

import engine
from tests.support.eventgrid import EventGridTopic

KEY = 'eg"Topic\\Key/+%é=='
SAS = "r=https%3a%2f%2forders.westeurope-1.eventgrid.azure.net%2fapi%2fevents&e=1%2f1%2f2030&s=abc%2bdef%3d"


@pytest.fixture
def topic(monkeypatch):
    monkeypatch.setenv("TEST_EG_TOPIC_KEY", KEY)
    monkeypatch.setenv("TEST_EG_SAS", SAS)
    with EventGridTopic(key=KEY, sas=SAS) as t:
        yield t


def publish(tmp_path, topic: EventGridTopic, inputs: dict, *, secrets: dict | None = None, input=None, **action):
    conn = {"kind": "eventgrid", "endpoint": topic.url,
            "settings": {"topic_endpoint": "https://orders.westeurope-1.eventgrid.azure.net/api/events"},
            "secrets": secrets or {"topic_key": "TEST_EG_TOPIC_KEY"}}
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"eg": conn}}))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": {"pub": {
        "type": "azure.eventgrid.Publish", "connection": "eg", "inputs": inputs, **action}}}, sort_keys=False))
    return engine.run_file(flow, input=input, state=tmp_path / "state.db", connections=tmp_path / "connections.yaml")


def test_cloud_events_go_as_a_cloudevents_batch_with_the_topic_key_and_the_ids_come_back(tmp_path, topic):
    result = publish(tmp_path, topic, {"source": "/flowrun/orders", "events": [
        {"type": "Shop.OrderPaid", "subject": "orders/7", "data": {"id": 7, "total": 12.5}},
        {"type": "Shop.OrderPaid", "id": "given-id", "source": "/elsewhere", "data": "text",
         "extensions": {"tenant": "acme"}, "time": "2026-01-02T03:04:05Z"}]})
    assert result.status == "Succeeded", result.steps["pub"].error
    [req] = topic.requests
    assert req.header("aeg-sas-key") == KEY and req.header("aeg-sas-token") is None
    assert req.header("content-type").startswith("application/cloudevents-batch+json")
    assert req.query["api-version"] == ["2018-01-01"]
    first, second = req.json()
    assert first["specversion"] == "1.0" and first["type"] == "Shop.OrderPaid"
    assert (first["source"], first["subject"], first["data"]) == ("/flowrun/orders", "orders/7",
                                                                  {"id": 7, "total": 12.5})
    assert second["id"] == "given-id" and second["source"] == "/elsewhere" and second["tenant"] == "acme"
    assert second["time"].startswith("2026-01-02T03:04:05")
    out = result.steps["pub"].outputs
    assert out["ids"] == [first["id"], "given-id"] and out["count"] == 2 and out["requests"] == 1


def test_event_grid_schema_events_carry_their_fields_and_a_sas_token_is_sent_as_aeg_sas_token(tmp_path, topic):
    result = publish(tmp_path, topic, {"schema": "EventGridEvent", "events": [
        {"subject": "orders/7", "eventType": "Shop.OrderPaid", "data": {"id": 7}, "dataVersion": "2.0"}]},
                     secrets={"sas_token": "TEST_EG_SAS"})
    assert result.status == "Succeeded", result.steps["pub"].error
    [req] = topic.requests
    assert req.header("aeg-sas-token") == SAS and req.header("aeg-sas-key") is None
    assert req.header("content-type").startswith("application/json")
    [event] = req.json()
    assert {k: event[k] for k in ("subject", "eventType", "data", "dataVersion")} == {
        "subject": "orders/7", "eventType": "Shop.OrderPaid", "data": {"id": 7}, "dataVersion": "2.0"}
    assert event["id"] == result.steps["pub"].outputs["ids"][0] and event["eventTime"]


def test_a_list_over_one_megabyte_is_split_into_requests_of_at_most_one_megabyte_in_order(tmp_path, topic):
    events = [{"type": "Big", "data": {"n": i, "pad": "x" * 200_000}} for i in range(12)]
    result = publish(tmp_path, topic, {"source": "/s", "events": events})
    assert result.status == "Succeeded", result.steps["pub"].error
    assert len(topic.requests) >= 3 and all(len(r.body) <= 1_048_576 for r in topic.requests)
    assert [e["data"]["n"] for e in topic.events] == list(range(12))
    assert result.steps["pub"].outputs["requests"] == len(topic.requests)


def test_an_event_over_one_megabyte_fails_before_anything_is_sent(tmp_path, topic):
    result = publish(tmp_path, topic, {"source": "/s", "events": [
        {"type": "Ok", "data": 1}, {"type": "Huge", "data": "x" * 1_100_000}]})
    assert result.status == "Failed"
    err = result.steps["pub"].error
    assert err["code"] == "EventTooLarge" and "events[1]" in err["message"]
    assert topic.requests == []


def test_ids_are_stable_across_retries_so_subscribers_can_deduplicate(tmp_path, topic):
    topic.fail_next(503)
    result = publish(tmp_path, topic, {"source": "/s", "events": [{"type": "T", "data": 1}]},
                     retryPolicy={"type": "fixed", "count": 2, "interval": "PT0.01S"})
    assert result.status == "Succeeded", result.steps["pub"].error
    assert len(topic.requests) == 2  # one 503 (the SDK's own retries are off), then the engine's retry
    assert topic.requests[0].json()[0]["id"] == topic.requests[1].json()[0]["id"]
    assert result.steps["pub"].attempts == 2


@pytest.mark.parametrize("status, code, retried", [(401, "AuthenticationFailed", False), (429, "TooManyRequests", True),
                                                   (503, "Busy", True), (413, "RequestEntityTooLarge", False)])
def test_service_errors_map_to_retryable_or_not(tmp_path, topic, status, code, retried):
    topic.fail_next(status, times=5)
    result = publish(tmp_path, topic, {"source": "/s", "events": [{"type": "T", "data": 1}]},
                     retryPolicy={"type": "fixed", "count": 1, "interval": "PT0.01S"})
    assert result.status == "Failed"
    assert result.steps["pub"].error["code"] == code
    assert len(topic.requests) == (2 if retried else 1)


def test_a_wrong_key_is_refused_and_the_key_shows_nowhere(tmp_path, topic, monkeypatch):
    monkeypatch.setenv("TEST_EG_TOPIC_KEY", KEY + "wrong")
    result = publish(tmp_path, topic, {"source": "/s", "events": [{"type": "T", "data": 1}]})
    assert result.status == "Failed" and result.steps["pub"].error["code"] == "AuthenticationFailed"
    text = json.dumps(result.steps["pub"].error)
    raw = (tmp_path / "state.db").read_bytes()
    for form in (KEY, json.dumps(KEY)[1:-1]):
        assert form not in text and form.encode() not in raw


@pytest.mark.parametrize("events, message", [
    ([{"type": "T"}], "source: a CloudEvent needs a source"),
    ([{"source": "/s", "data": 1}], "'type' is a required property"),
    ([{"source": "/s", "type": "T", "time": "yesterday"}], "time 'yesterday' is not an RFC 3339 time"),
])
def test_malformed_events_built_at_run_time_fail_clearly_and_nothing_is_sent(tmp_path, topic, events, message):
    result = publish(tmp_path, topic, {"events": "{{ triggerBody() }}"}, input=events)
    assert result.status == "Failed"
    assert message in result.steps["pub"].error["message"]
    assert topic.requests == []


@pytest.mark.parametrize("inputs, message", [
    ({"source": "/s", "events": [{"data": 1}]}, "actions.pub.inputs.events.0: 'type' is a required property"),
    ({"schema": "EventGridEvent", "events": [{"subject": "s", "data": 1}]},
     "actions.pub.inputs.events.0: 'eventType' is a required property"),
])
def test_malformed_events_written_in_the_flow_are_validation_problems_at_their_line(tmp_path, topic, inputs,
                                                                                    message):
    from engine.errors import FlowError

    with pytest.raises(FlowError) as info:
        publish(tmp_path, topic, inputs)
    assert message in str(info.value) and "flow.yaml:11:" in str(info.value)


def test_the_per_request_pipeline_options_take_effect_without_the_sdk_logging_a_notice_for_each(tmp_path, topic,
                                                                                                caplog):
    topic.fail_next(503)  # retry_total=0 reached the pipeline: the SDK does not send it again itself
    with caplog.at_level(logging.DEBUG, logger="azure.eventgrid"):
        result = publish(tmp_path, topic, {"source": "/flowrun/orders", "events": [{"type": "T", "data": 1}]},
                         retryPolicy={"type": "none"})
        assert result.steps["pub"].status == "Failed" and len(topic.requests) == 1
        result = publish(tmp_path, topic, {"source": "/flowrun/orders", "events": [{"type": "T", "data": 1}]})
    assert result.status == "Succeeded" and len(topic.requests) == 2
    assert not [r for r in caplog.records if "is not a known attribute" in r.getMessage()]


# the SDK writes JSON with ensure_ascii: "é" is 2 bytes of UTF-8 but 6 on the wire (\u00e9), and an
# astral character ("😀", 4 bytes) 12 (a surrogate pair): requests are sized as the SDK writes them
@pytest.mark.parametrize("char", ["é", "€", "😀", "\u2028", '"', "\\", "\x01"])
def test_unicode_heavy_events_are_split_by_the_size_the_sdk_sends_not_their_characters(tmp_path, topic, char):
    events = [{"type": "U", "data": {"n": i, "pad": char * 60_000}} for i in range(8)]
    result = publish(tmp_path, topic, {"source": "/s", "events": events})
    assert result.status == "Succeeded", result.steps["pub"].error
    assert all(len(r.body) <= 1_048_576 for r in topic.requests)
    assert [e["data"]["n"] for e in topic.events] == list(range(8))
    assert topic.events[0]["data"]["pad"] == char * 60_000


def test_an_event_whose_wire_size_is_over_one_megabyte_fails_before_anything_is_sent_even_if_its_utf8_is_under(
        tmp_path, topic):
    result = publish(tmp_path, topic, {"source": "/s", "events": [{"type": "Huge", "data": "😀" * 200_000}]})
    assert result.status == "Failed"  # 800 KB of UTF-8, 2.4 MB as the SDK writes it
    assert result.steps["pub"].error["code"] == "EventTooLarge" and topic.requests == []


def test_a_traced_run_sends_the_attempt_spans_traceparent_with_each_publish_request(tmp_path, topic):
    from tests.support.tracing import traceparent, traced

    with traced() as spans:
        result = publish(tmp_path, topic, {"source": "/flowrun/orders", "events": [{"type": "T", "data": 1}]})
    assert result.status == "Succeeded", result.steps["pub"].error
    [req] = topic.requests
    assert req.header("traceparent") == traceparent(spans.named("pub")[0])
    assert req.header("aeg-sas-key") == KEY


def test_an_untraced_publish_sends_no_traceparent_and_logs_no_notice(tmp_path, topic, caplog):
    result = publish(tmp_path, topic, {"source": "/flowrun/orders", "events": [{"type": "T", "data": 1}]})
    assert result.status == "Succeeded", result.steps["pub"].error
    assert topic.requests[0].header("traceparent") is None
    assert "not a known attribute" not in caplog.text
