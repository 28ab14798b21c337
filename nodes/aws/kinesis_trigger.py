"""``aws.kinesis.Stream``: a pull trigger that starts runs from every shard of a Kinesis stream.

    triggers:
      clicks:
        type: aws.kinesis.Stream
        connection: aws
        stream: clicks                 # a name or an ARN
        startingPosition: TRIM_HORIZON # LATEST, AT_TIMESTAMP (with timestamp)

Each shard is read in order by its own task. Each record (or each group of ``batchSize``
records of one GetRecords) is accepted as one run, together with the shard's checkpoint
(the last sequence number the run covers) in the same transaction: after a crash the
trigger continues after the checkpoint, so no record is lost and none runs twice (the runs
are also de-duplicated by shard and sequence number). The start position applies only to
a shard without a checkpoint. Resharding: the shard list is read again every
``shardRefresh`` seconds and whenever a shard closes; a child shard is read only once its
parents are drained (read to their end and checkpointed as done), from its first record.
A record that cannot become a run (not JSON, over ``maxMessageBytes``) is logged with its
shard and sequence number, counted as ``rejected`` and checkpointed past; reading goes on.
Several ``flowrun serve`` on one PostgreSQL state database split the shards: each reads
the shards it holds a lease on, an even share (a stream of 4 shards, 2 instances: 2 each);
a stopped or killed instance's shards are taken by the others and continue after their
checkpoints, and one that joins gets shards given up at a checkpoint boundary. A shard
started at LATEST keeps that moment as its checkpoint until its first record, so its next
reader (after a restart, or another instance) reads from there (AT_TIMESTAMP), not later.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import anyio

from engine.plugin import PullTrigger, TriggerConfigError

from .client import AWS, FORMAT, BadMessage, decode, describe_error

_DOC = __doc__.split("\n\n", 2)[2]


class KinesisStream(PullTrigger):
    type = "aws.kinesis.Stream"
    title = "Start runs from the records of an Amazon Kinesis data stream"
    description = _DOC
    connection = "aws"
    shared = "keys"  # several serve instances: each reads the shards it holds a lease on
    required = ("stream",)
    config = {
        "stream": {"type": "string", "minLength": 1, "description": "Stream name or ARN."},
        "startingPosition": {"enum": ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"], "default": "LATEST",
                             "description": "Where a shard without a checkpoint starts."},
        "timestamp": {"type": "string", "format": "date-time", "description": "With AT_TIMESTAMP."},
        "batchSize": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1,
                      "description": "Records per run: 1 gives a run per record; more gives runs whose "
                                     "`triggerBody()` is a list."},
        "limit": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000,
                  "description": "Records per GetRecords call."},
        "pollInterval": {"type": "number", "minimum": 0, "maximum": 60, "default": 1,
                         "description": "Seconds between GetRecords calls on a shard that is caught up (a "
                                        "shard takes 5 reads a second)."},
        "shardRefresh": {"type": "number", "minimum": 0.05, "maximum": 3600, "default": 10,
                         "description": "Seconds between reads of the shard list (new shards after a split "
                                        "or merge)."},
        "format": FORMAT,
        "maxMessageBytes": {"type": "integer", "minimum": 1, "maximum": 1048576, "default": 1048576},
    }
    example = {"type": "aws.kinesis.Stream", "connection": "aws", "stream": "clicks",
               "startingPosition": "TRIM_HORIZON", "batchSize": 100}

    def __init__(self, definition: dict, host: Any = None):
        super().__init__(definition, host)
        d = {k: v["default"] for k, v in self.config.items() if "default" in v}
        d.update(definition)
        problems = []
        if d["startingPosition"] == "AT_TIMESTAMP":
            if not d.get("timestamp"):
                problems.append(("timestamp", "startingPosition AT_TIMESTAMP needs a timestamp"))
            else:
                try:
                    self.timestamp = datetime.fromisoformat(str(d["timestamp"]).replace("Z", "+00:00"))
                except ValueError:
                    problems.append(("timestamp", f"{d['timestamp']!r} is not an ISO 8601 date-time"))
        elif d.get("timestamp"):
            problems.append(("timestamp", "only with startingPosition AT_TIMESTAMP"))
        if problems:
            raise TriggerConfigError(problems)
        self.opts = d
        self.stream = ({"StreamARN": d["stream"]} if str(d["stream"]).startswith("arn:")
                       else {"StreamName": d["stream"]})
        self.done: set[str] = set()
        self.reading: set[str] = set()
        self.stopping: set[str] = set()  # shards read here that another instance is to read: stop at a boundary
        self.shards: list[dict] = []
        self._changed = anyio.Event()
        self.ending: dict[str, str] = {}  # a closed shard's last sequence number (from ListShards)
        self.restart: dict[str, str] = {}  # where a shard with no checkpoint reads again after a failed accept

    async def start(self) -> None:
        self.clients = await self.host.client()
        self.kinesis = self.clients("kinesis")
        self.shards = await self._shards()  # the stream exists and can be read: fail at start, not later

    async def _call(self, operation: str, **params: Any) -> Any:
        conn = self.host.connection()

        def invoke() -> Any:
            with AWS.mapped(conn):
                return getattr(self.kinesis, operation)(**params)

        return await anyio.to_thread.run_sync(invoke, abandon_on_cancel=True)

    async def _shards(self) -> list[dict]:
        shards: list[dict] = []
        got = await self._call("list_shards", **self.stream)
        shards += got.get("Shards", [])
        while got.get("NextToken"):
            got = await self._call("list_shards", NextToken=got["NextToken"])
            shards += got.get("Shards", [])
        return shards

    def _drained(self, shard_id: str) -> bool:
        if shard_id in self.done:
            return True
        cp = self.host.checkpoint(shard_id)
        if isinstance(cp, dict) and cp.get("done"):
            self.done.add(shard_id)
            return True
        return False

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    with anyio.fail_after(self.host.lease_every):  # a hung call must not let the leases lapse
                        self.shards = await self._shards()
                except Exception as exc:  # noqa: BLE001 - try again at the next refresh, with the last list
                    why = (f"no answer within {self.host.lease_every:g} s" if isinstance(exc, TimeoutError)
                           else describe_error(exc))
                    self.host.log.warning(f"ListShards failed: {why}", extra={"event": "trigger_receive_failed"})
                readable = self._readable(self.shards)
                held = await self.host.lease_keys(readable)
                self.stopping = self.reading - held
                for sid, child in readable.items():
                    if sid in held and sid not in self.reading:
                        self.reading.add(sid)
                        tg.start_soon(self._read, sid, child)
                with anyio.move_on_after(min(self.opts["shardRefresh"], self.host.lease_every)):
                    await self._changed.wait()
                self._changed = anyio.Event()

    def _readable(self, shards: list[dict]) -> dict[str, bool]:
        """{shard id: whether it is a child (read from its start)} of the shards that can be read
        now: not drained, their parents drained (by whichever instance read them)."""
        listed = {s["ShardId"] for s in shards}
        for shard in shards:
            end = (shard.get("SequenceNumberRange") or {}).get("EndingSequenceNumber")
            if end is not None:
                self.ending[shard["ShardId"]] = end
        readable = {}
        for shard in shards:
            sid = shard["ShardId"]
            if self._drained(sid):
                continue
            parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                       if p and p in listed]
            if all(self._drained(p) for p in parents):
                readable[sid] = bool(parents) or self._has_parent(shard, listed)
        return readable

    @staticmethod
    def _has_parent(shard: dict, listed: set[str]) -> bool:
        """A child whose parents have left the stream's retention: read it from its start too."""
        return bool(shard.get("ParentShardId")) and shard["ParentShardId"] not in listed

    async def _iterator(self, shard_id: str, child: bool) -> str:
        cp = self.host.checkpoint(shard_id)
        params: dict[str, Any] = {"ShardId": shard_id, **self.stream}
        if isinstance(cp, dict) and cp.get("seq"):
            params.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=cp["seq"])
        elif shard_id in self.restart:
            params.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=self.restart[shard_id])
        elif since := self._since(cp):
            params.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=since)
        elif child:
            params["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            params["ShardIteratorType"] = self.opts["startingPosition"]
            if params["ShardIteratorType"] == "AT_TIMESTAMP":
                params["Timestamp"] = self.timestamp
            elif self._latest:  # where LATEST was, kept: whoever reads the shard next starts there, not later
                now = datetime.fromtimestamp(self.host.clock.now(), timezone.utc)
                await self.host.save_checkpoint(shard_id, {"since": now.isoformat()})
        iterator = (await self._call("get_shard_iterator", **params))["ShardIterator"]
        self.host.log.info(f"reading shard {shard_id} from {params['ShardIteratorType']}",
                           extra={"event": "trigger_shard_reading", "shard": shard_id})
        return iterator

    async def _read(self, shard_id: str, child: bool) -> None:
        """Read one shard until it is drained or this instance is to stop reading it; then give
        its lease up (every record read so far is accepted with its checkpoint)."""
        try:
            await self._read_shard(shard_id, child)
        finally:
            self.reading.discard(shard_id)
            self.stopping.discard(shard_id)
            self.restart.pop(shard_id, None)
            with anyio.CancelScope(shield=True):
                await self.host.release_keys([shard_id])
            self._changed.set()

    async def _read_shard(self, shard_id: str, child: bool) -> None:
        failures = 0
        iterator: str | None = None
        last = (self.host.checkpoint(shard_id) or {}).get("seq") if isinstance(self.host.checkpoint(shard_id),
                                                                               dict) else None
        while True:
            if shard_id in self.stopping:  # a checkpoint boundary: what was read is accepted
                self.host.log.info(f"shard {shard_id} left to another instance",
                                   extra={"event": "trigger_shard_released", "shard": shard_id})
                return
            try:
                if iterator is None:
                    iterator = await self._iterator(shard_id, child)
                got = await self._call("get_records", ShardIterator=iterator, Limit=self.opts["limit"])
                failures = 0
            except Exception as exc:  # noqa: BLE001 - an expired iterator or a failure: start again from the checkpoint
                failures += 1
                self.host.log.warning(f"reading shard {shard_id} failed: {describe_error(exc)}",
                                      extra={"event": "trigger_receive_failed", "shard": shard_id})
                iterator = None
                await anyio.sleep(min(20.0, 0.2 * 2 ** min(failures, 7)))
                continue
            records = got.get("Records") or []
            if records:
                try:
                    last = await self._take(shard_id, records, last)
                except Exception as exc:  # noqa: BLE001 - a failed commit: read again from the checkpoint
                    failures += 1
                    self.host.log.error(f"records of shard {shard_id} not accepted: {type(exc).__name__}: {exc}",
                                        extra={"event": "trigger_accept_failed", "shard": shard_id})
                    cp = self.host.checkpoint(shard_id)
                    last = cp.get("seq") if isinstance(cp, dict) else None
                    if not last:  # no checkpoint yet: LATEST would skip these records, so start at them
                        self.restart[shard_id] = records[0]["SequenceNumber"]
                    iterator = None
                    await anyio.sleep(min(20.0, 0.2 * 2 ** min(failures, 7)))
                    continue
            iterator = got.get("NextShardIterator")
            if iterator is None or (not records and self._at_end(shard_id, last, got)):
                await self.host.save_checkpoint(shard_id, {"seq": last, "done": True})
                self.done.add(shard_id)
                self.host.log.info(f"shard {shard_id} drained", extra={"event": "trigger_shard_drained",
                                                                       "shard": shard_id})
                return
            if not records or not got.get("MillisBehindLatest"):
                await anyio.sleep(self.opts["pollInterval"])

    @staticmethod
    def _since(cp: Any) -> datetime | None:
        """When a shard started at LATEST was first read (its checkpoint until it has a record)."""
        try:
            return datetime.fromisoformat(cp["since"]) if isinstance(cp, dict) and not cp.get("seq") else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def _latest(self) -> bool:
        return self.opts["startingPosition"] == "LATEST"

    def _at_end(self, shard_id: str, last: str | None, got: dict) -> bool:
        """A closed shard read to its end. AWS says so with no NextShardIterator; a shard that
        ListShards shows closed (EndingSequenceNumber), whose read gave nothing at its tip or
        past its last sequence number, is at its end too (some emulators never drop the iterator)."""
        end = self.ending.get(shard_id)
        if end is None:
            return False
        if last is not None and int(last) >= int(end):
            return True
        return not got.get("MillisBehindLatest")

    async def _take(self, shard_id: str, records: list[dict], last: str | None) -> str | None:
        good: list[tuple[dict, Any]] = []
        for r in records:
            try:
                good.append((r, decode(r["Data"], self.opts["format"], self.opts["maxMessageBytes"])))
            except BadMessage as exc:
                self.host.log.error(f"record {shard_id}/{r['SequenceNumber']} rejected: {exc}",
                                    extra={"event": "trigger_message_rejected", "shard": shard_id,
                                           "sequence_number": r["SequenceNumber"]})
                self.host.count("rejected")
                if not good:  # nothing before it to commit with: move the checkpoint past it now
                    last = r["SequenceNumber"]
                    await self.host.save_checkpoint(shard_id, {"seq": last})
                else:
                    good.append((r, BadMessage))
        size = self.opts["batchSize"]
        runs = [g for g in good if g[1] is not BadMessage]
        # the checkpoint of a group covers the rejected records just after it, too
        for start in range(0, len(runs), size):
            group = runs[start:start + size]
            end = good.index(group[-1])
            while end + 1 < len(good) and good[end + 1][1] is BadMessage:
                end += 1
            covered = good[end][0]["SequenceNumber"]
            await self.host.accept(self._payload(shard_id, group), f"{shard_id}:{group[0][0]['SequenceNumber']}",
                                   checkpoint={shard_id: {"seq": covered}})
            last = covered
        return last

    def _payload(self, shard_id: str, group: list[tuple[dict, Any]]) -> dict:
        records = [{"body": body, "sequenceNumber": r["SequenceNumber"], "partitionKey": r.get("PartitionKey"),
                    "shardId": shard_id, "stream": self.opts["stream"],
                    "arrivalTime": (r["ApproximateArrivalTimestamp"].isoformat()
                                    if r.get("ApproximateArrivalTimestamp") else None)} for r, body in group]
        if self.opts["batchSize"] == 1:
            return records[0]
        return {"body": [r["body"] for r in records], "records": records, "shardId": shard_id,
                "stream": self.opts["stream"]}
