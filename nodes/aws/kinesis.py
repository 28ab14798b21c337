"""``aws.kinesis.PutRecords``: records onto a Kinesis data stream, partitioned by an expression."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema, count

from .client import RETRY_SCHEMA, call, send_in_batches, to_json

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024
MAX_RECORD = 1024 * 1024  # data plus partition key
RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})


def stream_params(stream: str) -> dict:
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def encode(value: Any, encoding: str, what: str) -> bytes:
    if encoding == "base64":
        if not isinstance(value, str):
            raise ActionError(f"{what} is not a base64 string", code="InvalidInput")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ActionError(f"{what} is not valid base64", code="InvalidInput") from None
    if encoding == "text" and isinstance(value, str):
        return value.encode()
    return to_json(value, what).encode()


class PutRecords(Node):
    type = "aws.kinesis.PutRecords"
    title = "Put records on an Amazon Kinesis data stream"
    description = (
        "PutRecords in requests of at most 500 records and 5 MB; a record over 1 MB (data and partition key) "
        "fails the action before anything is sent. `partitionKey` is an expression evaluated for each record "
        "(`item()` is the record). Only the records Kinesis failed with ProvisionedThroughputExceededException "
        "or InternalFailure are sent again, with exponential backoff and full jitter; the action fails when "
        "some still failed, unless `allowPartial: true`.")
    connection = "aws"
    lazy = ("partitionKey", "explicitHashKey")
    input_schema = inputs_schema(
        ["stream", "records", "partitionKey"],
        stream={"type": "string", "minLength": 1, "description": "Stream name or ARN."},
        records={"type": "array", "minItems": 1, "maxItems": 100000,
                 "description": "The records' data: each is sent as JSON (`encoding: json`), as UTF-8 text "
                                "(`text`, strings) or decoded from base64 (`base64`)."},
        encoding={"enum": ["json", "text", "base64"], "default": "json"},
        partitionKey={"type": "string", "minLength": 1,
                      "description": "Expression for each record's partition key, e.g. "
                                     "\"{{ item().customerId }}\" (written in the flow file)."},
        explicitHashKey={"type": "string", "description": "Expression for an explicit hash key (optional)."},
        allowPartial={"type": "boolean", "default": False},
        retry=RETRY_SCHEMA,
    )
    outputs = {"type": "object", "properties": {
        "records": {"type": "array", "description": "One per input record, in order: {shardId, sequenceNumber} "
                                                    "or {errorCode, errorMessage}, and attempts."},
        "failedCount": {"type": "integer"}}}
    example = {"type": "aws.kinesis.PutRecords", "connection": "aws",
               "inputs": {"stream": "clicks", "records": "{{ triggerBody().events }}",
                          "partitionKey": "{{ item().userId }}"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would put {count(inputs.get('records'))} record(s) on Kinesis {inputs.get('stream')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        encoding = inputs.get("encoding", "json")
        records = []
        for i, value in enumerate(inputs["records"]):
            key = await context.evaluate_async(inputs["partitionKey"], item=value, index=i)
            key = key if isinstance(key, str) else to_json(key, f"records[{i}] partition key")
            if not 1 <= len(key) <= 256:
                raise ActionError(f"records[{i}]: the partition key must be 1 to 256 characters, got {len(key)}",
                                  code="InvalidInput", details={"record": i})
            entry = {"Data": encode(value, encoding, f"records[{i}]"), "PartitionKey": key}
            if inputs.get("explicitHashKey"):
                entry["ExplicitHashKey"] = str(await context.evaluate_async(inputs["explicitHashKey"], item=value,
                                                                            index=i))
            size = len(entry["Data"]) + len(key.encode())
            if size > MAX_RECORD:
                raise ActionError(f"records[{i}] is {size} bytes (data and partition key): a Kinesis record is "
                                  f"at most {MAX_RECORD} bytes", code="RecordTooLarge",
                                  details={"record": i, "bytes": size})
            records.append(entry)
        sizes = [len(r["Data"]) + len(r["PartitionKey"].encode()) for r in records]
        results: list[dict] = [{} for _ in records]
        target = stream_params(inputs["stream"])

        async def send(indexes: list[int]) -> dict[int, dict]:
            got = await call(context, "kinesis", "put_records", Records=[records[i] for i in indexes], **target)
            failed = {}
            for i, rec in zip(indexes, got.get("Records", [])):
                if rec.get("ErrorCode"):
                    failed[i] = {"code": rec["ErrorCode"], "message": rec.get("ErrorMessage")}
                else:
                    results[i] = {"shardId": rec.get("ShardId"), "sequenceNumber": rec.get("SequenceNumber")}
            return failed

        return await send_in_batches("PutRecords", send, results, sizes, "records", inputs,
                                     max_count=MAX_RECORDS, max_bytes=MAX_BYTES,
                                     retryable=lambda f: f["code"] in RETRYABLE)
