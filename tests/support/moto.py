"""One moto server for the whole test session, on 127.0.0.1, reached by real boto3 over HTTP.

    def test_x(moto):                       # the session fixture (tests/nodes/aws/conftest.py)
        url = moto.sqs.create_queue(QueueName=moto.name("q"))["QueueUrl"]

``moto.url`` is the endpoint a connection's ``endpoint`` points at; ``moto.client(service)``
is a plain boto3 client for setting things up and looking at what the nodes sent. Names are
made unique per test (``moto.name``): the server is shared. Credentials are fake and given
explicitly, and ``AWS_EC2_METADATA_DISABLED`` keeps botocore off the instance metadata service.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
REGION = "us-east-1"
KEY_ID = "AKIAFLOWRUNTEST00001"


class Moto:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, region_name=REGION, endpoint_url=self.url,
                                                  aws_access_key_id=KEY_ID, aws_secret_access_key="fake-secret")
        return self._clients[service]

    def __getattr__(self, service: str) -> Any:
        if service in ("sqs", "sns", "events", "kinesis", "sts"):
            return self.client(service)
        raise AttributeError(service)

    @staticmethod
    def name(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def queue(self, prefix: str = "q", *, dlq_after: int | None = None, fifo: bool = False,
              **attributes: str) -> tuple[str, str | None]:
        """A new queue's URL (and its dead-letter queue's, with ``dlq_after`` receives)."""
        dlq_url = None
        suffix = ".fifo" if fifo else ""
        attrs = {k: str(v) for k, v in attributes.items()}
        if fifo:
            attrs["FifoQueue"] = "true"
        if dlq_after is not None:
            dlq_url = self.sqs.create_queue(QueueName=self.name(prefix + "-dlq") + suffix,
                                            Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
            arn = self.arn(dlq_url)
            import json

            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(dlq_after)})
        url = self.sqs.create_queue(QueueName=self.name(prefix) + suffix, Attributes=attrs)["QueueUrl"]
        return url, dlq_url

    def arn(self, queue_url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def drain(self, queue_url: str, *, wait: int = 0) -> list[dict]:
        """Every message visible on the queue now (received, then deleted)."""
        out: list[dict] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                           MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
            messages = got.get("Messages") or []
            if not messages:
                return out
            out += messages
            self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])

    def count(self, queue_url: str) -> int:
        """Messages on the queue, visible or not."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def stream(self, prefix: str = "s", shards: int = 1) -> str:
        name = self.name(prefix)
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name

    def stop(self) -> None:
        self.server.stop()


def connections_yaml(endpoint: str, *, env: str = "TEST_AWS", extra: str = "", settings: str = "") -> str:
    """A connections.yaml with one ``aws`` connection to ``endpoint``, keys from ``<env>_KEY_ID``
    and ``<env>_SECRET``."""
    return (f"connections:\n  aws:\n    kind: aws\n    endpoint: {endpoint}\n"
            f"    settings: {{region: {REGION}{', ' + settings if settings else ''}}}\n"
            f"    secrets: {{access_key_id: {env}_KEY_ID, secret_access_key: {env}_SECRET{extra}}}\n")
