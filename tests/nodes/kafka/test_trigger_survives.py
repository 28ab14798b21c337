"""The kafka.Consume trigger never dies on one message: a message too big to forward to the
dead-letter topic with its error headers, headers whose names or values hold control bytes or
invalid UTF-8, template text in the payload. Each bad message reaches the dead-letter topic with
a clear reason, the good ones run, and every offset is committed."""
from __future__ import annotations

import json

from tests.listener.inprocess import serving, wait_for
from tests.nodes.kafka.test_consume import done, flows, outputs


def test_a_message_too_big_to_dead_letter_whole_is_dead_lettered_without_its_value_and_the_loop_goes_on(
        tmp_path, monkeypatch, kafka_cluster):
    topic, dlq = kafka_cluster.create_topic(kafka_cluster.topic("big"), 1), kafka_cluster.topic("bigdlq")
    huge = b"x" * 999_900  # the broker took it; with the error headers added it is over message.max.bytes
    kafka_cluster.produce(topic, [b'{"id": 1}', huge, b'{"id": 2}'])
    folder = flows(tmp_path, kafka_cluster, "big", {"topics": [topic], "groupId": f"g-{topic}",
                                                    "deadLetterTopic": dlq, "maxBytes": 1000})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "big", 2), "the two good messages")
        [dead] = kafka_cluster.read(dlq, 1)
        wait_for(lambda: kafka_cluster.committed(f"g-{topic}", topic, 1)[0] == 3, "every offset committed")
        assert not app.records.events("trigger_error")
    headers = dict(dead.headers())
    assert headers["flowrun.error"] == b"TooLarge" and headers["flowrun.offset"] == b"1"
    assert headers["flowrun.value.dropped"] == b"999900" and not dead.value()
    assert sorted(n["body"]["id"] for n in outputs(app, "big")) == [1, 2]


def test_hostile_headers_and_template_text_reach_the_run_as_data_never_evaluated(tmp_path, monkeypatch, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("hdr"), 1)
    hostile = [("ctl\x01\x1b\x7f", b"\x00\x1b[31m\r\n"), ("bad", b"\xff\xfe\xc0"), ("tpl", b"{{ 7 * 7 }}"),
               ("dup", b"1"), ("dup", b"2"), ("nul", None)]
    kafka_cluster.produce(topic, [json.dumps({"id": 1, "t": "{{ 6 * 7 }}", "e": "${{ env }}"}).encode()],
                          key=b"{{ 1 + 1 }}", headers=hostile)
    folder = flows(tmp_path, kafka_cluster, "hdr", {"topics": [topic], "groupId": f"g-{topic}"})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: done(app, "hdr", 1), "the run")
        [note] = outputs(app, "hdr")
    assert note["body"] == {"id": 1, "t": "{{ 6 * 7 }}", "e": "${{ env }}"} and note["key"] == "{{ 1 + 1 }}"
    assert note["headers"]["ctl\x01\x1b\x7f"] == "\x00\x1b[31m\r\n"
    assert note["headers"]["tpl"] == "{{ 7 * 7 }}" and note["headers"]["dup"] == "2" and note["headers"]["nul"] is None
    assert note["headers"]["bad"] == "//7A"  # not UTF-8: base64


def test_a_failed_commit_stops_nothing_the_batch_is_taken_again_and_each_message_runs_once(
        tmp_path, monkeypatch, kafka_cluster):
    from engine.store import Store
    from tests.nodes.aws.test_kinesis_trigger import state_locked

    monkeypatch.setattr(Store, "BUSY_TIMEOUT", 0.2)
    topic = kafka_cluster.create_topic(kafka_cluster.topic("lock"), 1)
    folder = flows(tmp_path, kafka_cluster, "lock", {"topics": [topic], "groupId": f"g-{topic}"})
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: app.records.events("kafka_assigned"), "the partition assigned")
        with state_locked(tmp_path / "state.db"):
            kafka_cluster.produce(topic, [b'{"id": 1}', b'{"id": 2}'])
            wait_for(lambda: app.records.events("kafka_retry"), "a commit refused")
        kafka_cluster.produce(topic, [b'{"id": 3}'])
        wait_for(lambda: done(app, "lock", 3), "every message run")
        wait_for(lambda: kafka_cluster.committed(f"g-{topic}", topic, 1)[0] == 3, "every offset committed")
        assert not app.records.events("trigger_error")
    assert sorted(n["body"]["id"] for n in outputs(app, "lock")) == [1, 2, 3]


SECRET = 'sr"pa\\ss/w+o%rd-é€'


def test_a_dead_letters_error_header_never_carries_a_connection_secret_in_any_encoding(tmp_path, monkeypatch,
                                                                                       kafka_cluster):
    import yaml

    from engine.vendor import secret_forms

    monkeypatch.setenv("TEST_SR_PASSWORD", SECRET)
    topic, dlq = kafka_cluster.create_topic(kafka_cluster.topic("sec"), 1), kafka_cluster.topic("secdlq")
    # the schema error quotes the value, which happens to hold the secret (a reason is no place for it)
    kafka_cluster.produce(topic, [json.dumps({"id": SECRET}).encode(), json.dumps({"id": [SECRET]}).encode()])
    folder = flows(tmp_path, kafka_cluster, "sec", {"topics": [topic], "groupId": f"g-{topic}", "deadLetterTopic": dlq,
                                                    "schema": {"properties": {"id": {"type": "integer"}}}})
    conn = kafka_cluster.connection()
    conn["secrets"] = {"schema_registry_password": "TEST_SR_PASSWORD"}
    (folder / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": conn}}))
    with serving(folder, state=tmp_path / "state.db", monkeypatch=monkeypatch) as app:
        wait_for(lambda: 'outcome="dead_lettered"' in app.client.get("/metrics").text, "the dead letters sent")
        dead = kafka_cluster.read(dlq, 2)
    for m in dead:
        reason = dict(m.headers())["flowrun.error.message"].decode()
        assert "is not of type 'integer'" in reason
        assert not [f for f in secret_forms(SECRET) if f in reason], reason
    logs = json.dumps(app.records.records, ensure_ascii=False)
    assert not [f for f in secret_forms(SECRET) if f in logs]
