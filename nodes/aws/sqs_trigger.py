"""``aws.sqs.Queue``: a pull trigger that starts runs from an SQS queue (``flowrun serve``).

    triggers:
      orders:
        type: aws.sqs.Queue
        connection: aws
        queue: orders                 # a name or a queue URL
        deleteAfter: committed        # or succeeded

The loop long-polls ReceiveMessage (``waitTimeSeconds``, 20 by default), at most
``maxInFlight`` messages received and not yet settled (back pressure: it receives no more,
and waits too while the server's runs are at ``--max-in-flight``). Each message (or each
group of ``batchSize``) is accepted as one run, de-duplicated by MessageId: a message SQS
delivers again after a crash finds its run and starts nothing. ``deleteAfter: committed``
deletes the message once its run is committed; ``succeeded`` waits for the run and deletes
the message only if it succeeded, else lets it become visible again (``retryDelay``), so
the queue's redrive policy moves it to its dead-letter queue after ``maxReceiveCount``
receives. While a message waits to be accepted or settled, its visibility timeout is
extended. A message that cannot become a run (not JSON, over ``maxMessageBytes``) is
logged with the reason, counted as ``rejected``, and left to reach the dead-letter queue
the same way; the loop goes on.
"""
from __future__ import annotations

import base64
import hashlib
import time
from datetime import datetime, timezone
from typing import Any

import anyio

from engine.plugin import PullTrigger, TriggerConfigError, trace_carrier

from .client import AWS, FORMAT, BadMessage, decode, describe_error

MAX_SQS_BYTES = 1024 * 1024
_DOC = __doc__.split("\n\n", 2)[2]


class SqsQueue(PullTrigger):
    type = "aws.sqs.Queue"
    shared = "all"  # several serve instances: SQS hands each message to one of them (visibility timeout)
    title = "Start a run for each message of an Amazon SQS queue"
    description = _DOC
    connection = "aws"
    required = ("queue",)
    config = {
        "queue": {"type": "string", "minLength": 1, "description": "Queue name or URL."},
        "waitTimeSeconds": {"type": "integer", "minimum": 0, "maximum": 20, "default": 20,
                            "description": "Long-poll wait of each ReceiveMessage."},
        "batchSize": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1,
                      "description": "Messages per run: 1 gives a run per message; more gives runs whose "
                                     "`triggerBody()` is a list (of the messages one receive returned)."},
        "maxInFlight": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 20,
                        "description": "Messages received and not yet settled, at most."},
        "visibilityTimeout": {"type": "integer", "minimum": 1, "maximum": 43200, "default": 30,
                              "description": "Seconds a received message stays hidden; extended while it "
                                             "waits to be accepted or (deleteAfter: succeeded) while its run runs."},
        "deleteAfter": {"enum": ["committed", "succeeded"], "default": "committed",
                        "description": "Delete a message once its run is committed, or only once it succeeded."},
        "retryDelay": {"type": "integer", "minimum": 0, "maximum": 43200, "default": 30,
                       "description": "Seconds before a rejected message or a failed run's message is visible "
                                      "again (and counts one more receive toward the dead-letter queue)."},
        "format": FORMAT,
        "maxMessageBytes": {"type": "integer", "minimum": 1, "maximum": MAX_SQS_BYTES, "default": 262144,
                            "description": "A bigger message is rejected (never run)."},
    }
    example = {"type": "aws.sqs.Queue", "connection": "aws", "queue": "orders", "deleteAfter": "succeeded"}

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        d = {k: v["default"] for k, v in self.config.items() if "default" in v}
        d.update(definition)
        problems = []
        if d["batchSize"] > d["maxInFlight"]:
            problems.append(("batchSize", f"{d['batchSize']} is more than maxInFlight ({d['maxInFlight']})"))
        if problems:
            raise TriggerConfigError(problems)
        self.opts = d
        self.inflight: dict[str, float] = {}  # receipt handle -> when its visibility was last set
        self._room = anyio.Event()

    async def start(self) -> None:
        self.clients = await self.host.client()
        self.sqs = self.clients("sqs", read_timeout=self.clients.timeout + self.opts["waitTimeSeconds"] + 5)
        queue = self.opts["queue"]
        self.url = queue if "://" in queue else (await self._call("get_queue_url", QueueName=queue))["QueueUrl"]

    async def _call(self, operation: str, **params: Any) -> Any:
        conn = self.host.connection()

        def invoke() -> Any:
            with AWS.mapped(conn):
                return getattr(self.sqs, operation)(**params)

        return await anyio.to_thread.run_sync(invoke, abandon_on_cancel=True)

    async def run(self) -> None:
        failures = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            while True:
                room = self.opts["maxInFlight"] - len(self.inflight)
                if room <= 0:
                    self._room = anyio.Event()
                    await self._room.wait()
                    continue
                if self.host.full():
                    await self.host.wait_for_room()
                try:
                    got = await self._call(
                        "receive_message", QueueUrl=self.url, MaxNumberOfMessages=min(10, room),
                        WaitTimeSeconds=self.opts["waitTimeSeconds"], VisibilityTimeout=self.opts["visibilityTimeout"],
                        MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure
                    failures += 1
                    self.host.log.warning(f"ReceiveMessage failed: {describe_error(exc)}",
                                          extra={"event": "trigger_receive_failed"})
                    await anyio.sleep(min(20.0, 0.2 * 2 ** min(failures, 7)))
                    continue
                messages = got.get("Messages") or []
                now = time.monotonic()
                for m in messages:
                    self.inflight[m["ReceiptHandle"]] = now
                await self._take(messages, tg)

    async def _take(self, messages: list[dict], tg: Any) -> None:
        """Accept the received messages in order (a FIFO queue's order is the runs' order)."""
        good: list[tuple[dict, Any]] = []
        for m in messages:
            try:
                good.append((m, decode(m.get("Body", ""), self.opts["format"], self.opts["maxMessageBytes"])))
            except BadMessage as exc:
                self.host.log.error(f"message {m.get('MessageId')} rejected: {exc}",
                                    extra={"event": "trigger_message_rejected", "message_id": m.get("MessageId")})
                self.host.count("rejected")
                tg.start_soon(self._release, [m])
        size = self.opts["batchSize"]
        for start in range(0, len(good), size):
            group = good[start:start + size]
            try:
                trace = trace_carrier(group[0][0].get("MessageAttributes") or {})  # the sender's span: the run's parent
                accepted = await self.host.accept(self._payload(group), self._dedupe(group), trace=trace)
            except Exception as exc:  # noqa: BLE001 - a failed commit: the messages come back later
                self.host.log.error(f"messages not accepted: {type(exc).__name__}: {exc}",
                                    extra={"event": "trigger_accept_failed"})
                self._forget([m for m, _ in group])
                continue
            tg.start_soon(self._settle, [m for m, _ in group], accepted)

    def _payload(self, group: list[tuple[dict, Any]]) -> dict:
        records = [self._record(m, body) for m, body in group]
        if self.opts["batchSize"] == 1:
            return records[0]
        return {"body": [r["body"] for r in records], "messages": records, "queueUrl": self.url}

    def _record(self, m: dict, body: Any) -> dict:
        attrs = {}
        for name, a in (m.get("MessageAttributes") or {}).items():
            if "BinaryValue" in a:
                attrs[name] = {"binary": base64.b64encode(a["BinaryValue"]).decode()}
            else:
                attrs[name] = a.get("StringValue")
        system = dict(m.get("Attributes") or {})
        sent = system.get("SentTimestamp")
        return {"body": body, "messageId": m["MessageId"], "queueUrl": self.url, "attributes": system,
                "messageAttributes": attrs, "md5OfBody": m.get("MD5OfBody"),
                "sentTime": None if not sent else datetime.fromtimestamp(int(sent) / 1000, timezone.utc).isoformat()}

    @staticmethod
    def _dedupe(group: list[tuple[dict, Any]]) -> str:
        if len(group) == 1:
            return group[0][0]["MessageId"]
        ids = ",".join(sorted(m["MessageId"] for m, _ in group))
        return "batch:" + hashlib.sha256(ids.encode()).hexdigest()

    async def _settle(self, messages: list[dict], accepted: Any) -> None:
        try:
            if self.opts["deleteAfter"] == "succeeded":
                status = await self.host.finished(accepted.run_id)
                if status != "Succeeded":
                    self.host.log.info(f"run {accepted.run_id} ended {status}: its messages are left to SQS",
                                       extra={"event": "trigger_message_kept", "run_id": accepted.run_id})
                    self.host.count("kept", len(messages))
                    await self._release(messages)
                    return
            await self._delete(messages)
        except Exception as exc:  # noqa: BLE001 - SQS will deliver it again: dedupe finds the run
            self.host.log.warning(f"settling messages of run {accepted.run_id} failed: {describe_error(exc)}",
                                  extra={"event": "trigger_settle_failed"})
            self._forget(messages)

    async def _delete(self, messages: list[dict]) -> None:
        try:
            got = await self._call("delete_message_batch", QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            for f in got.get("Failed") or []:
                self.host.log.warning(f"DeleteMessage failed: {f.get('Code')}: {f.get('Message')}",
                                      extra={"event": "trigger_settle_failed"})
            self.host.count("deleted", len(messages) - len(got.get("Failed") or []))
        finally:
            self._forget(messages)

    async def _release(self, messages: list[dict]) -> None:
        """Let messages become visible again after ``retryDelay`` (one more receive toward the DLQ)."""
        try:
            await self._call("change_message_visibility_batch", QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.opts["retryDelay"]}
                for i, m in enumerate(messages)])
        except Exception as exc:  # noqa: BLE001 - the visibility timeout runs out anyway
            self.host.log.warning(f"ChangeMessageVisibility failed: {describe_error(exc)}",
                                  extra={"event": "trigger_settle_failed"})
        finally:
            self._forget(messages)

    def _forget(self, messages: list[dict]) -> None:
        for m in messages:
            self.inflight.pop(m["ReceiptHandle"], None)
        self._room.set()

    async def _heartbeat(self) -> None:
        """Extend the visibility of messages still waiting, a third of the timeout before it runs out."""
        timeout = self.opts["visibilityTimeout"]
        period = max(0.2, timeout / 3)
        while True:
            await anyio.sleep(period)
            due = [h for h, at in list(self.inflight.items()) if time.monotonic() - at >= period]
            for start in range(0, len(due), 10):
                chunk = due[start:start + 10]
                try:
                    await self._call("change_message_visibility_batch", QueueUrl=self.url, Entries=[
                        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": timeout} for i, h in enumerate(chunk)])
                except Exception as exc:  # noqa: BLE001
                    self.host.log.warning(f"extending visibility failed: {describe_error(exc)}",
                                          extra={"event": "trigger_heartbeat_failed"})
                    continue
                now = time.monotonic()
                for h in chunk:
                    if h in self.inflight:
                        self.inflight[h] = now
                self.host.count("extended", len(chunk))
