"""aws.sqs.SendMessage and aws.sns.Publish against moto."""
from __future__ import annotations

import json

import pytest

from tests.support.aws_faults import PartialFailures

from .conftest import action


def test_one_message_with_attributes_reaches_the_queue_by_name(moto, aws_run):
    url, _ = moto.queue("send")
    name = url.rsplit("/", 1)[1]
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": name, "message": {
        "body": {"orderId": "{{ triggerBody().id }}"},
        "attributes": {"kind": "OrderPaid", "qty": 3, "urgent": True, "raw": {"binary": "AAEC"}}}})},
        input={"id": "O-7"})
    assert run.status == "Succeeded", run.error
    [m] = moto.drain(url)
    assert run.steps["send"].outputs == {"messageId": m["MessageId"]}
    assert json.loads(m["Body"]) == {"orderId": "O-7"}
    attrs = m["MessageAttributes"]
    assert attrs["kind"] == {"StringValue": "OrderPaid", "DataType": "String"}
    assert attrs["qty"] == {"StringValue": "3", "DataType": "Number"}
    assert attrs["urgent"]["StringValue"] == "true"
    assert attrs["raw"] == {"BinaryValue": b"\x00\x01\x02", "DataType": "Binary"}


def test_a_batch_goes_in_requests_of_ten_and_a_fifo_queue_gets_group_and_stable_dedup_ids(moto, aws_run):
    url, _ = moto.queue("batch", fifo=True)
    messages = [{"body": f"m{i}", "groupId": "g"} for i in range(12)]
    messages[0]["deduplicationId"] = "mine"
    with PartialFailures(moto.url) as proxy:
        run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": url, "messages": messages})},
                      endpoint=proxy.url)
        sent = [s for t, s in proxy.sent if t == "AmazonSQS.SendMessageBatch"]
    assert run.status == "Succeeded", run.error
    assert [len(s) for s in sent] == [10, 2]
    assert sent[0][0]["MessageDeduplicationId"] == "mine"
    assert all(e["MessageGroupId"] == "g" for s in sent for e in s)
    out = run.steps["send"].outputs["messages"]
    assert all(m["messageId"] and m["sequenceNumber"] for m in out)
    assert [m["Body"] for m in moto.drain(url)] == [f"m{i}" for i in range(12)]  # FIFO order


def test_a_fifo_queue_without_a_group_id_fails_clearly(moto, aws_run):
    url, _ = moto.queue("nogroup", fifo=True)
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": url, "message": {"body": "x"}})})
    assert run.status == "Failed" and "message.groupId is required for a FIFO queue" in run.steps["send"].error["message"]


def test_only_the_batch_entries_sqs_failed_not_by_the_sender_are_sent_again(moto, aws_run):
    url, _ = moto.queue("partial")
    with PartialFailures(moto.url) as proxy:
        proxy.fail("AmazonSQS.SendMessageBatch", {0, 2}, "InternalError")
        run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": url, "retry": {"delay": 0.001},
                                                              "messages": [{"body": f"m{i}"} for i in range(4)]})},
                      endpoint=proxy.url)
        sent = [[e["MessageBody"] for e in s] for t, s in proxy.sent if t == "AmazonSQS.SendMessageBatch"]
    assert run.status == "Succeeded", run.error
    assert sent == [["m1", "m3"], ["m0", "m2"]]
    assert [m["attempts"] for m in run.steps["send"].outputs["messages"]] == [2, 1, 2, 1]
    assert sorted(m["Body"] for m in moto.drain(url)) == ["m0", "m1", "m2", "m3"]


def test_a_message_over_256_kb_fails_before_anything_is_sent(moto, aws_run):
    url, _ = moto.queue("big")
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": url, "messages": [
        {"body": "ok"}, {"body": "x" * 262_000, "attributes": {"pad": "y" * 200}}]})})
    assert run.status == "Failed" and run.steps["send"].error["code"] == "MessageTooLarge"
    assert moto.count(url) == 0


def test_an_unknown_queue_name_is_a_terminal_error(moto, aws_run):
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": "no-such-queue", "message": {"body": "x"}})})
    assert run.status == "Failed" and run.steps["send"].attempts == 1
    assert "NonExistentQueue" in run.steps["send"].error["code"]


def test_publish_reaches_an_sns_topic_and_its_sqs_subscription(moto, aws_run):
    url, _ = moto.queue("sub")
    topic = moto.sns.create_topic(Name=moto.name("topic"))["TopicArn"]
    moto.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=moto.arn(url))
    run = aws_run({"pub": action("aws.sns.Publish", {"topicArn": topic, "message": {"hello": "world"},
                                                     "subject": "Hi", "attributes": {"kind": "greeting"}})})
    assert run.status == "Succeeded", run.error
    [m] = moto.drain(url)
    envelope = json.loads(m["Body"])
    assert envelope["MessageId"] == run.steps["pub"].outputs["messageId"]
    assert json.loads(envelope["Message"]) == {"hello": "world"} and envelope["Subject"] == "Hi"
    assert envelope["MessageAttributes"]["kind"]["Value"] == "greeting"


@pytest.mark.parametrize("group", [None, "g1"])
def test_a_fifo_topic_needs_a_group_id_and_gets_a_stable_deduplication_id(moto, aws_run, group):
    topic = moto.sns.create_topic(Name=moto.name("t") + ".fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    inputs = {"topicArn": topic, "message": "m", **({"groupId": group} if group else {})}
    run = aws_run({"pub": action("aws.sns.Publish", inputs)})
    if group:
        assert run.status == "Succeeded", run.error
        assert run.steps["pub"].outputs["messageId"]
    else:
        assert run.status == "Failed" and "groupId is required" in run.steps["pub"].error["message"]
