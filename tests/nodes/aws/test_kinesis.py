"""aws.kinesis.PutRecords against moto."""
from __future__ import annotations

import json

from tests.support.aws_faults import PartialFailures

from .conftest import action


def read_all(moto, stream: str) -> list[dict]:
    out = []
    for shard in moto.kinesis.list_shards(StreamName=stream)["Shards"]:
        it = moto.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        out += [{**r, "ShardId": shard["ShardId"]} for r in moto.kinesis.get_records(ShardIterator=it)["Records"]]
    return out


def test_records_are_partitioned_by_the_expression_and_each_gets_its_shard_and_sequence_number(moto, aws_run):
    stream = moto.stream("put", shards=2)
    events = [{"user": f"u{i % 3}", "n": i} for i in range(6)]
    run = aws_run({"put": action("aws.kinesis.PutRecords", {
        "stream": stream, "records": "{{ triggerBody().events }}", "partitionKey": "{{ item().user }}"})},
        input={"events": events})
    assert run.status == "Succeeded", run.error
    out = run.steps["put"].outputs["records"]
    stored = {(r["ShardId"], r["SequenceNumber"]): r for r in read_all(moto, stream)}
    assert {r["shardId"] for r in out} == {"shardId-000000000000", "shardId-000000000001"}
    for event, rec in zip(events, out):
        got = stored[rec["shardId"], rec["sequenceNumber"]]
        assert got["PartitionKey"] == event["user"] and json.loads(got["Data"]) == event


def test_text_and_base64_encodings_send_the_bytes_as_given(moto, aws_run):
    stream = moto.stream("enc")
    run = aws_run({"t": action("aws.kinesis.PutRecords", {"stream": stream, "records": ["héllo"], "encoding": "text",
                                                          "partitionKey": "k"}),
                   "b": action("aws.kinesis.PutRecords", {"stream": stream, "records": ["AAEC"], "encoding": "base64",
                                                          "partitionKey": "k"}, runAfter={"t": ["Succeeded"]})})
    assert run.status == "Succeeded", run.error
    assert sorted(r["Data"] for r in read_all(moto, stream)) == sorted(["héllo".encode(), b"\x00\x01\x02"])


def test_a_record_over_1_mb_fails_clearly_before_anything_is_sent(moto, aws_run):
    stream = moto.stream("big")
    run = aws_run({"put": action("aws.kinesis.PutRecords", {"stream": stream, "encoding": "text",
                                                            "records": ["ok", "x" * (1024 * 1024)],
                                                            "partitionKey": "k"})})
    step = run.steps["put"]
    assert run.status == "Failed" and step.error["code"] == "RecordTooLarge"
    assert "records[1] is 1048577 bytes" in step.error["message"]
    assert read_all(moto, stream) == []


def test_requests_hold_500_records_and_5_mb_at_most(moto, aws_run):
    stream = moto.stream("many")
    with PartialFailures(moto.url) as proxy:
        records = ["r"] * 1100 + ["x" * 900_000] * 7
        run = aws_run({"put": action("aws.kinesis.PutRecords", {"stream": stream, "records": records,
                                                                "encoding": "text", "partitionKey": "k"})},
                      endpoint=proxy.url)
        sizes = [len(s) for t, s in proxy.sent]
    assert run.status == "Succeeded", run.error
    assert sizes == [500, 500, 105, 2]  # the last 100 small and 5 big fit 5 MB; the other 2 big follow


def test_only_throughput_and_internal_failures_are_retried_and_only_those_records(moto, aws_run):
    stream = moto.stream("retry")
    with PartialFailures(moto.url) as proxy:
        proxy.fail("Kinesis_20131202.PutRecords", {1}, "ProvisionedThroughputExceededException")
        proxy.fail("Kinesis_20131202.PutRecords", {0}, "InternalFailure")
        run = aws_run({"put": action("aws.kinesis.PutRecords", {"stream": stream, "records": [0, 1, 2],
                                                                "partitionKey": "{{ item() }}",
                                                                "retry": {"delay": 0.001}})}, endpoint=proxy.url)
        sent = [[json.loads(__import__("base64").b64decode(r["Data"])) for r in s] for t, s in proxy.sent]
    assert run.status == "Succeeded", run.error
    assert sent == [[0, 2], [], [1]]  # what reached the stream: 1 failed twice, then passed
    out = run.steps["put"].outputs["records"]
    assert [r["attempts"] for r in out] == [1, 3, 1] and all(r["sequenceNumber"] for r in out)
    assert sorted(json.loads(r["Data"]) for r in read_all(moto, stream)) == [0, 1, 2]


def test_a_partition_key_that_comes_from_data_is_never_evaluated(moto, aws_run):
    stream = moto.stream("lazy")
    run = aws_run({"put": action("aws.kinesis.PutRecords", {"stream": stream, "records": [1],
                                                            "partitionKey": "{{ item() }}"})})
    assert run.status == "Succeeded"
    run = aws_run({"put": action("aws.kinesis.PutRecords", "{{ triggerBody() }}")},
                  input={"stream": stream, "records": [1], "partitionKey": "{{ 7 * 7 }}"})
    assert run.status == "Failed"
    assert "data is never evaluated" in run.steps["put"].error["message"]
