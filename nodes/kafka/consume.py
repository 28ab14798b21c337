"""``kafka.Consume``: a consumer group over topics; one run per message, or per batch.

How a message becomes exactly one run, whatever crashes:

1. ``consume`` a batch (auto-commit off). Messages below a partition's checkpoint (the next
   offset, kept in the state DB) were handled before a crash or by another member: skipped.
2. A message that cannot be decoded, is bigger than ``maxBytes`` or fails ``schema`` goes to
   ``deadLetterTopic`` (original key, value and headers, plus ``flowrun.error``,
   ``flowrun.topic``, ``flowrun.partition``, ``flowrun.offset`` headers) and its delivery
   report is awaited; without a dead-letter topic it is logged and counted. Consumption goes on.
3. Every other message is accepted (its run committed) with dedupe key
   ``topic/partition/offset`` and, in the same transaction, the partition's checkpoint.
4. Only then are the offsets committed to Kafka (asynchronously; synchronously when a
   rebalance revokes partitions, and when the consumer stops).

On assignment a partition starts at its checkpoint when the state DB has one (it is never
behind the committed offset), so a crash between 3 and 4 re-runs nothing. While the server's
runs in flight are at ``--max-in-flight`` the assigned partitions are paused (the consumer
keeps polling, so it stays in the group) and resumed once there is room.
"""
from __future__ import annotations

import base64
import json
from typing import Any

import anyio

from engine import safejson
from engine.plugin import ActionError, PullTrigger, TriggerConfigError, trace_carrier

from .client import KAFKA, KafkaClient

FORMATS = ["json", "string", "base64", "avro", "jsonschema"]
POLL_SECONDS = 0.1  # one consume call: what a stop waits at most
MAX_POLL = 1000  # messages taken by one consume call
LOW_WATER = 0.25  # once paused, resume when a quarter of --max-in-flight is free (not one message at a time)
# Waiting for room pauses the partitions only past this: a pause drops the messages librdkafka has
# fetched ahead, and the resume fetches them again (about 80 ms each on the mock cluster: 500 runs/s
# instead of 1,500). Runs usually end within milliseconds; a longer wait pauses, polls and serves
# rebalances as before.
PAUSE_AFTER = 1.0


def _text_or_b64(raw: bytes | None) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), True


MAX_PATTERN = 1000  # characters of a topic pattern (a topic name is at most 249)


def pattern_problem(pattern: str) -> str | None:
    """Why a topic pattern cannot be subscribed to safely, or None.

    librdkafka matches the pattern against every topic name of the cluster's metadata, again at
    each refresh, with a backtracking regex engine in its own threads: a pattern whose matching
    can take exponential time (a quantifier over something already quantified, ``^(a+)+$``, or
    over alternatives that can match the same text, ``^(a|ab)*$``) would stall the consumer on
    one long topic name. Backreferences and lookarounds are refused too: they are not in the
    regex dialect librdkafka supports.
    """
    import re

    if len(pattern) > MAX_PATTERN:
        return f"a topic pattern of {len(pattern)} characters; at most {MAX_PATTERN}"
    try:
        re.compile(pattern)
        from re import _parser as sre  # the parse tree of the pattern (what re.compile just built)

        tree = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"not a regular expression: {exc}"
    c = sre  # the opcodes live beside the parser (MAX_REPEAT, BRANCH, ...)

    def first(items: Any) -> Any:
        """The literal a sequence starts with, or None when it may start with anything."""
        for op, av in items:
            if op is c.LITERAL:
                return av
            if op is c.SUBPATTERN:
                return first(av[-1])
            return None
        return None

    def walk(items: Any, repeated: bool) -> str | None:
        for op, av in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
                lo, hi, sub = av
                many = hi > 1
                if repeated:  # even an optional one: (a?){30}a{30} backtracks 2**30 ways
                    return ("a quantifier over a quantified expression can take exponential time to match "
                            "(catastrophic backtracking); write it with one quantifier")
                found = walk(sub, repeated or many)
            elif op is c.SUBPATTERN:
                found = walk(av[-1], repeated)
            elif op is getattr(c, "ATOMIC_GROUP", None):
                found = walk(av, repeated)
            elif op is c.BRANCH:
                branches = av[1]
                starts = [first(b) for b in branches]
                if repeated and (None in starts or len(set(starts)) < len(starts)):
                    return ("a quantifier over alternatives that can match the same text can take "
                            "exponential time to match (catastrophic backtracking)")
                found = next((f for f in (walk(b, repeated) for b in branches) if f), None)
            elif op in (c.GROUPREF, c.GROUPREF_EXISTS):
                return "backreferences are not supported in topic patterns"
            elif op in (c.ASSERT, c.ASSERT_NOT):
                return "lookahead and lookbehind are not supported in topic patterns"
            else:
                found = None
            if found:
                return found
        return None

    return walk(tree, False)


class Invalid(Exception):
    """A message the flow cannot take: it goes to the dead-letter topic."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Consume(PullTrigger):
    type = "kafka.Consume"
    shared = "all"  # several serve instances: the consumer group gives each partition to one of them
    title = "Consume Kafka topics in a consumer group"
    description = (
        "Joins consumer group `groupId` over `topics` (a name, or a regular expression starting with `^` for "
        "pattern subscription) and starts one run per message (`batchSize: 1`) or per batch of up to "
        "`batchSize` messages of one partition. Auto-commit is off: offsets are committed only after the runs "
        "are committed to the state DB, and synchronously when a rebalance revokes partitions. Dedupe by "
        "topic/partition/offset, plus a per-partition checkpoint in the state DB: a crash runs no message twice "
        "and loses none. Partitions pause while `--max-in-flight` runs execute. A message that cannot be "
        "decoded, is over `maxBytes` or fails `schema` goes to `deadLetterTopic` with error headers. "
        "`triggerBody()` is the decoded value (a list of values for a batch); `triggerOutputs()` has `key`, "
        "`headers`, `topic`, `partition`, `offset`, `timestamp` (ms), or `messages` (each with them) for a batch.")
    connection = "kafka"
    config = {
        "topics": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                   "description": "topic names, or regular expressions starting with ^ (pattern subscription)"},
        "groupId": {"type": "string", "minLength": 1, "description": "the consumer group (group.id)"},
        "valueFormat": {"enum": FORMATS, "default": "json",
                        "description": "how values decode: json, string, base64 (bytes), or through the "
                                       "connection's Schema Registry: avro, jsonschema"},
        "keyFormat": {"enum": ["string", "base64", "json"], "default": "string"},
        "schema": {"type": "object", "description": "JSON Schema every decoded value must match (else: dead letter)"},
        "maxBytes": {"type": "integer", "minimum": 1, "default": 1048576,
                     "description": "a bigger value goes to the dead-letter topic"},
        "batchSize": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1,
                      "description": "1: one run per message; more: one run per batch of one partition"},
        "deadLetterTopic": {"type": "string", "minLength": 1,
                            "description": "where undecodable or invalid messages go, with error headers"},
        "startFrom": {"enum": ["earliest", "latest"], "default": "earliest",
                      "description": "where a new group starts (auto.offset.reset)"},
        "properties": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                       "description": "more librdkafka consumer properties (session.timeout.ms ...)"},
    }
    required = ("topics", "groupId")
    example = {"type": "kafka.Consume", "connection": "kafka", "topics": ["orders", "^orders-.*"],
               "groupId": "flowrun-orders", "schema": {"type": "object", "required": ["id"]},
               "deadLetterTopic": "orders-dlq"}

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        d = definition
        problems = []
        self.topics = list(d["topics"])
        for i, topic in enumerate(self.topics):
            if topic.startswith("^"):
                problem = pattern_problem(topic)
                if problem:
                    problems.append((f"topics.{i}", problem))
        self.validator = None
        if "schema" in d:
            import jsonschema

            try:
                cls = jsonschema.validators.validator_for(d["schema"])
                cls.check_schema(d["schema"])
                self.validator = cls(d["schema"])
            except jsonschema.SchemaError as exc:
                problems.append(("schema", f"not a valid JSON Schema: {exc.message}"))
        props = d.get("properties") or {}
        for key in ("enable.auto.commit", "group.id"):
            if key in props:
                problems.append((f"properties.{key}", "is set by the trigger (auto-commit stays off; use groupId)"))
        if problems:
            raise TriggerConfigError(problems)
        self.group = d["groupId"]
        self.value_format = d.get("valueFormat", "json")
        self.key_format = d.get("keyFormat", "string")
        self.max_bytes = int(d.get("maxBytes", 1048576))
        self.batch_size = int(d.get("batchSize", 1))
        self.dead_letter = d.get("deadLetterTopic")
        self.conf = {"group.id": self.group, "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "auto.offset.reset": d.get("startFrom", "earliest"), **props}
        self.client: KafkaClient | None = None
        self.consumer: Any = None
        self.next: dict[tuple[str, int], int] = {}  # the next offset to handle, per assigned partition
        self.saved: dict[tuple[str, int], int] = {}  # what the state DB holds
        self.committed: dict[tuple[str, int], int] = {}  # what Kafka holds
        self.paused = False
        self.capacity = 1  # the most runs seen free at once (--max-in-flight)
        self._pause_logged = -1e9
        # cooperative-sticky and KIP-848's consumer protocol hand partitions out incrementally
        self.incremental = (str(props.get("group.protocol", "")).lower() == "consumer"
                            or "cooperative" in str(props.get("partition.assignment.strategy", "")))

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.client = await self.host.client()
        if self.value_format in ("avro", "jsonschema"):
            self.client.registry  # noqa: B018 - fails now, clearly, when the connection has no registry
        self.consumer = await anyio.to_thread.run_sync(self.client.consumer, self.conf)
        await anyio.to_thread.run_sync(lambda: self.consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost))

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await anyio.to_thread.run_sync(self._close, consumer)

    def _close(self, consumer: Any) -> None:
        try:
            self._commit(consumer, list(self.next), asynchronous=False)
        finally:
            consumer.close()

    # -- rebalance callbacks (run inside consume(), in its worker thread) ---------------------
    def _on_assign(self, consumer: Any, partitions: list) -> None:
        """Start each partition at the later of the group's committed offset (another server may
        have moved it on) and this state DB's checkpoint (runs committed, offset commit lost)."""
        try:
            committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=30)}
        except Exception:  # noqa: BLE001 - the coordinator is away: the checkpoint still holds
            committed = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            import anyio.from_thread  # here, not at import: it costs a plain `flowrun run` ~35 ms

            saved = anyio.from_thread.run_sync(self.host.checkpoint, f"{tp.topic}/{tp.partition}")
            start = max(saved if isinstance(saved, int) else -1, committed.get(key, -1))
            if start >= 0:
                tp.offset = start
                self.next[key] = self.saved[key] = self.committed[key] = start
                if isinstance(saved, int) and saved < start:
                    self.saved[key] = saved
        if self.incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        if self.paused:
            consumer.pause(partitions)
        self.host.log.info("partitions assigned", extra={"event": "kafka_assigned",
                                                          "count": len(partitions)})

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            self._commit(consumer, keys, asynchronous=False)  # the next member starts where we stopped
        except Exception:  # noqa: BLE001 - the state DB checkpoint still covers it
            self.host.log.warning("offset commit on revocation failed", exc_info=True,
                                  extra={"event": "kafka_commit_failed"})
        self.host.log.info("partitions revoked", extra={"event": "kafka_revoked", "count": len(partitions)})
        for key in keys:
            self.next.pop(key, None)
            self.saved.pop(key, None)
            self.committed.pop(key, None)

    def _on_lost(self, consumer: Any, partitions: list) -> None:
        for tp in partitions:  # another member owns them now: nothing may be committed for them
            for table in (self.next, self.saved, self.committed):
                table.pop((tp.topic, tp.partition), None)

    def _commit(self, consumer: Any, keys: list, *, asynchronous: bool) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        # an asynchronous commit may still be in flight, or refused by a rebalance under way:
        # a synchronous one (revocation, stop) commits every position, whatever was sent before
        offsets = [TopicPartition(t, p, self.next[(t, p)]) for t, p in keys
                   if (t, p) in self.next and (not asynchronous or self.committed.get((t, p)) != self.next[(t, p)])]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except KafkaException as exc:
            if exc.args and getattr(exc.args[0], "name", lambda: "")() == "_NO_OFFSET":
                return
            raise
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset

    # -- consuming --------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            self.capacity = max(self.capacity, self.host.room())
            if self._waiting():
                await self._pause_until_room()
            # no more messages at once than runs may start: the limit holds to the message
            want = min(MAX_POLL, max(1, self.host.room()) * self.batch_size)
            try:
                batch = await anyio.to_thread.run_sync(self.consumer.consume, want, POLL_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a broker or group error: librdkafka recovers
                mapped = KAFKA.map_error(exc, self.client.secrets)
                if mapped is None or not mapped.retryable:
                    raise
                self.host.log.warning(f"consumer error: {mapped.message}", extra={"event": "kafka_error"})
                await anyio.sleep(1)
                continue
            if batch:
                await self._handle_or_rewind(batch)

    async def _handle_or_rewind(self, batch: list) -> None:
        """Handle a batch; when the Schema Registry or the dead-letter topic cannot be reached
        (nothing of the batch was accepted then), go back to its start and try again shortly."""
        try:
            await self._handle(batch)
            self._held = 0
        except Exception as exc:  # noqa: BLE001 - the loop outlives any one batch (a commit, a DLQ refusal)
            # nothing after the failure was committed to Kafka: go back and take the batch again
            # (what was accepted is found by its dedupe key), backing off while it keeps failing
            self._held = getattr(self, "_held", 0) + 1
            retryable = isinstance(exc, ActionError) and exc.retryable
            text = exc.message if isinstance(exc, ActionError) else f"{type(exc).__name__}: {exc}"
            (self.host.log.warning if retryable else self.host.log.error)(
                f"batch held back: {text}", extra={"event": "kafka_retry"})
            await anyio.to_thread.run_sync(self._rewind, batch)
            await anyio.sleep(min(30.0, 2 ** min(self._held - 1, 5)))

    def _rewind(self, batch: list) -> None:
        from confluent_kafka import TopicPartition

        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            if msg.error() is None:
                key = (msg.topic(), msg.partition())
                first[key] = min(first.get(key, msg.offset()), msg.offset())
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, max(offset, self.next.get((topic, partition), 0))))

    def _waiting(self) -> bool:
        return self.host.full() or self.host.room() < self.capacity * LOW_WATER

    async def _wait_for_room(self) -> None:
        if self.host.full():
            with anyio.move_on_after(POLL_SECONDS):
                await self.host.wait_for_room()
        else:  # below the low-water mark: runs are ending, room comes soon
            await anyio.sleep(0.005)

    async def _pause_until_room(self) -> None:
        """Wait for room; past PAUSE_AFTER, pause every assigned partition and keep polling
        (group membership, rebalances) until runs end."""
        with anyio.move_on_after(PAUSE_AFTER):
            while self._waiting():
                await self._wait_for_room()
        if not self._waiting():
            return
        assignment = await anyio.to_thread.run_sync(self.consumer.assignment)
        self.paused = True
        await anyio.to_thread.run_sync(self.consumer.pause, assignment)
        self.host.count("paused")
        quiet = anyio.current_time() - self._pause_logged < 10  # a busy stream pauses often: say so now and then
        if not quiet:
            self._pause_logged = anyio.current_time()
            self.host.log.info("paused: runs in flight at the limit", extra={"event": "kafka_paused"})
        try:
            polled = 0.0
            while self._waiting():
                await self._wait_for_room()
                if anyio.current_time() - polled >= POLL_SECONDS:
                    polled = anyio.current_time()
                    # a paused consumer returns nothing, but a rebalance may be served here
                    leftover = await anyio.to_thread.run_sync(self.consumer.consume, 1, 0)
                    if leftover:
                        await self._handle_or_rewind(leftover)
        finally:
            self.paused = False
            assignment = await anyio.to_thread.run_sync(self.consumer.assignment)
            await anyio.to_thread.run_sync(self.consumer.resume, assignment)
        if not quiet:
            self.host.log.info("resumed", extra={"event": "kafka_resumed"})

    async def _handle(self, batch: list) -> None:
        good: dict[tuple[str, int], list[tuple[Any, Any]]] = {}
        bad: list[tuple[Any, Invalid]] = []
        for msg in batch:
            err = msg.error()
            if err is not None:  # a partition EOF or a broker error: librdkafka goes on by itself
                if not err.name() == "_PARTITION_EOF":
                    self.host.log.warning(f"consumer error: {err.name()}", extra={"event": "kafka_error"})
                continue
            key = (msg.topic(), msg.partition())
            if msg.offset() < self.next.get(key, -1):
                self.host.count("skipped")  # handled before a crash or by the previous owner
                continue
            try:
                good.setdefault(key, []).append((msg, self._decode(msg)))
            except Invalid as exc:
                bad.append((msg, exc))
        if bad:
            await self._dead_letter(bad)
        async with anyio.create_task_group() as tg:
            for key, items in good.items():
                for i in range(0, len(items), self.batch_size):
                    tg.start_soon(self._accept, key, items[i:i + self.batch_size])
        for msg in batch:
            if msg.error() is None:
                key = (msg.topic(), msg.partition())
                self.next[key] = max(self.next.get(key, 0), msg.offset() + 1)
        behind = {k: v for k, v in self.next.items() if self.saved.get(k) != v}
        for (topic, partition), offset in behind.items():  # a partition whose tail went to the DLQ
            await self.host.save_checkpoint(f"{topic}/{partition}", offset)
            self.saved[(topic, partition)] = offset
        self._commit(self.consumer, list(self.next), asynchronous=True)  # queued, never blocks

    async def _accept(self, key: tuple[str, int], items: list) -> None:
        topic, partition = key
        last = items[-1][0].offset() + 1
        checkpoint = {f"{topic}/{partition}": last}
        if len(items) == 1 and self.batch_size == 1:
            msg, value = items[0]
            payload = {"body": value, **self._describe(msg)}
            dedupe = f"{topic}/{partition}/{msg.offset()}"
        else:
            payload = {"body": [v for _, v in items], "messages": [{**self._describe(m), "body": v} for m, v in items],
                       "topic": topic, "partition": partition}
            dedupe = f"{topic}/{partition}/{items[0][0].offset()}-{items[-1][0].offset()}"
        trace = trace_carrier(items[0][0].headers() or [])  # the producer's span: the run's parent
        await self.host.accept(payload, dedupe, checkpoint=checkpoint, trace=trace)
        if self.saved.get(key, -1) < last:
            self.saved[key] = last

    # -- decoding ---------------------------------------------------------------------------
    def _describe(self, msg: Any) -> dict:
        key, key_b64 = self._key(msg.key())
        headers, binary = {}, []
        for name, raw in msg.headers() or []:
            text, b64 = _text_or_b64(raw)
            headers[name] = text
            if b64:
                binary.append(name)
        ts_type, ts = msg.timestamp()
        out = {"key": key, "headers": headers, "topic": msg.topic(), "partition": msg.partition(),
               "offset": msg.offset(), "timestamp": ts if ts_type else None}
        if key_b64:
            out["keyBase64"] = True
        if binary:
            out["binaryHeaders"] = binary
        return out

    def _key(self, raw: bytes | None) -> tuple[Any, bool]:
        if raw is None:
            return None, False
        if self.key_format == "base64":
            return base64.b64encode(raw).decode(), False
        if self.key_format == "json":
            try:
                return safejson.loads(raw), False
            except ValueError:
                return _text_or_b64(raw)
        return _text_or_b64(raw)

    def _decode(self, msg: Any) -> Any:
        raw = msg.value()
        if raw is not None and len(raw) > self.max_bytes:
            raise Invalid("TooLarge", f"the value is {len(raw)} bytes, over maxBytes {self.max_bytes}")
        fmt = self.value_format
        try:
            if raw is None:
                value = None
            elif fmt == "json":
                value = safejson.loads(raw)
            elif fmt == "string":
                value = raw.decode("utf-8")
            elif fmt == "base64":
                value = base64.b64encode(raw).decode()
            else:
                from confluent_kafka.serialization import MessageField, SerializationContext

                de = self.client.deserializer(fmt)
                value = de(raw, SerializationContext(msg.topic(), MessageField.VALUE, msg.headers()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Invalid("Undecodable", f"the value is not {fmt}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a Schema Registry serde error, a registry that is down
            mapped = KAFKA.map_error(exc, self.client.secrets)
            if mapped is not None and mapped.retryable:
                raise mapped from exc  # the registry is unreachable: the message is not invalid
            raise Invalid("Undecodable", f"the value is not {fmt}: {mapped.message if mapped else exc}") from None
        if self.validator is not None:
            errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                where = lambda e: "/" + "/".join(str(p) for p in e.absolute_path)  # noqa: E731
                raise Invalid("SchemaMismatch", "; ".join(f"{where(e)}: {e.message}" for e in errors[:10]))
        return value

    # -- the dead-letter topic --------------------------------------------------------------
    async def _dead_letter(self, bad: list[tuple[Any, Invalid]]) -> None:
        for msg, exc in bad:
            self.host.log.warning(f"message {msg.topic()}/{msg.partition()}/{msg.offset()} refused: {exc.message}",
                                  extra={"event": "kafka_invalid", "reason": exc.code})
        self.host.count("invalid", len(bad))
        if not self.dead_letter:
            return
        def send() -> None:
            with KAFKA.mapped_secrets(self.client.secrets):
                self._send_dead_letters(bad)

        await anyio.to_thread.run_sync(send)
        self.host.count("dead_lettered", len(bad))

    def _send_dead_letters(self, bad: list[tuple[Any, Invalid]]) -> None:
        """Forward each message with its error headers. A message the dead-letter topic cannot
        take whole (its value plus our headers over ``message.max.bytes``) goes again without its
        value (``flowrun.value.dropped`` says how many bytes it had), then without its own headers
        too: the reason always arrives, and one big message never stops consumption."""
        from engine.plugin import scrub

        # the reason names no secret (a registry error may quote its URL or credentials), in any encoding
        ours = [[("flowrun.error", exc.code.encode()),
                 ("flowrun.error.message", scrub(exc.message, self.client.secrets)[:1000].encode()),
                 ("flowrun.topic", msg.topic().encode()), ("flowrun.partition", str(msg.partition()).encode()),
                 ("flowrun.offset", str(msg.offset()).encode())] for msg, exc in bad]

        def tier(i: int, level: int) -> tuple[bytes | None, list]:
            msg = bad[i][0]
            value = msg.value()
            if level == 0:
                return value, list(msg.headers() or []) + ours[i]
            dropped = [("flowrun.value.dropped", str(len(value or b"")).encode())]
            if level == 1:
                return None, list(msg.headers() or []) + ours[i] + dropped
            return None, ours[i] + dropped + [("flowrun.headers.dropped", str(len(msg.headers() or [])).encode())]

        pending = list(range(len(bad)))
        for level in range(3):
            too_big = self._produce_dead_letters(bad, pending, lambda i: tier(i, level), last=level == 2)
            if not too_big:
                return
            self.host.log.warning(f"{len(too_big)} message(s) too large for the dead-letter topic: sent again "
                                  f"without their {'value' if level == 0 else 'value and headers'}",
                                  extra={"event": "kafka_dead_letter_trimmed"})
            pending = too_big

    def _produce_dead_letters(self, bad: list, indexes: list[int], shape: Any, *, last: bool) -> list[int]:
        """Produce ``indexes`` and await their reports; the ones refused as too large (when a
        smaller form is left to try), any other failure raised."""
        from confluent_kafka import KafkaError, KafkaException

        from .produce import _Reports

        producer = self.client.producer
        reports = _Reports(len(indexes))
        too_big: list[int] = []
        size_errors = (KafkaError.MSG_SIZE_TOO_LARGE, getattr(KafkaError, "_MSG_SIZE_TOO_LARGE", None))
        for n, i in enumerate(indexes):
            msg = bad[i][0]
            value, headers = shape(i)
            while True:
                try:
                    producer.produce(self.dead_letter, value, key=msg.key(), headers=headers,
                                     on_delivery=reports.callback(n))
                    break
                except BufferError:
                    producer.poll(0.005)
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if last or getattr(err, "code", lambda: None)() not in size_errors:
                        raise
                    too_big.append(i)
                    reports.report(n, None, _Nothing())
                    break
        while not reports.done.wait(0.05):
            pass
        failed = []
        for n, result in enumerate(reports.results):
            err = result[0]
            if err is None:
                continue
            if not last and err.code() in size_errors:
                too_big.append(indexes[n])
            else:
                failed.append(err)
        if failed:  # the messages are not committed: they come again after a restart
            raise KafkaException(failed[0])
        return sorted(too_big)


class _Nothing:
    """Stands in for a message never handed to the producer (its report filled in at once)."""

    def topic(self) -> None:
        return None

    partition = offset = topic
