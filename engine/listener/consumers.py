"""Pull triggers inside ``flowrun serve``: one task each, kept in step with the trigger table.

For every pull trigger of a served flow (a schedule, a queue consumer) the server builds
the trigger with a ``Host`` (its capabilities: accept a run, checkpoints, the clock, a
logger, counters), awaits ``start()`` before it reports ready, runs ``run()`` in a task,
and on shutdown, or when a reload changes or removes the flow's trigger, cancels ``run()``
and awaits ``stop()``. An error in one trigger is logged and stops that trigger only.

A trigger stopped because PostgreSQL cannot be reached (engine.pgstore reconnects by itself)
is started again once it can, with backoff. A trigger lease dies with the connection that
wrote it (its backend ends): the instance stops consuming at once and takes the lease again,
or stands by if another instance took it meanwhile.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable

import anyio

from engine.backoff import Backoff
from engine.errors import ConnectionError_, StoreError, StoreUnavailable
from engine.plugin import Accepted, SystemClock

from .triggers import PullEntry

log = logging.getLogger("flowrun.listener")


class _TriggerLog(logging.LoggerAdapter):
    """The trigger's logger: every record names its flow and trigger, and keeps its own extras."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


class Host:
    """What a pull trigger may use (``engine.plugin.TriggerHost``), for one flow trigger."""

    def __init__(self, entry: PullEntry, engine: Any, runs: Any, metrics: Any, clock: Any, keys: Any = None):
        self.entry = entry
        self._keys = keys  # engine.pglease.KeyLeases of a ``shared = "keys"`` trigger on PostgreSQL
        self.flow_name = entry.flow.name
        self.trigger_name = entry.name
        self.clock = clock
        self.log = _TriggerLog(log, {"flow": self.flow_name, "trigger": self.trigger_name})
        self._engine, self._runs, self._metrics = engine, runs, metrics

    async def accept(self, payload: dict, dedupe_key: str | None = None, *,
                     checkpoint: dict[str, Any] | None = None, request: dict | None = None,
                     trace: dict | None = None) -> Accepted:
        if self.entry.cls.limited:
            await self._runs.wait_for_room()
        key = None if dedupe_key is None else f"{self.trigger_name}:{dedupe_key}"
        got = await self._engine.accept(self.entry.flow, self.trigger_name, payload, key, checkpoint=checkpoint,
                                        request=request, trace=trace, hold=self._runs.executes)
        labels = (self.flow_name, self.trigger_name)
        if got.duplicate:
            self._metrics.child(self._metrics.duplicates, *labels).inc()
            return got
        self._runs.launch(got.run_id, self.entry.flow, self.trigger_name)
        self._metrics.child(self._metrics.accepted, *labels).inc()
        return got

    def checkpoint(self, key: str = "") -> Any:
        return self._engine.checkpoint(self.flow_name, self.trigger_name, key)

    async def save_checkpoint(self, key: str, value: Any) -> None:
        await self._engine.save_checkpoint(self.flow_name, self.trigger_name, key, value)

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self._metrics.events.labels(self.flow_name, self.trigger_name, outcome).inc(n)

    def connection(self) -> Any:
        """The trigger's connection (settings and secrets from the environment), resolved once;
        a missing variable or unknown name raises ConnectionError_ with every reason."""
        name = self.entry.definition.get("connection")
        if not isinstance(name, str):
            raise ConnectionError_(f"trigger '{self.trigger_name}' names no connection")
        conns = self._engine.connections_for(self.entry.flow.file)
        return conns.resolve({name}, self._engine.redactor)[name]

    async def client(self) -> Any:
        return await self.connection().get_client()

    @property
    def lease_every(self) -> float:
        """Seconds within which a ``shared = "keys"`` trigger calls ``lease_keys`` again (its
        leases last three times that); infinite when nothing is leased (one instance, SQLite)."""
        return math.inf if self._keys is None else self._keys.ttl / 3

    async def lease_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` (the trigger's partitions readable now) this instance reads:
        all of them on SQLite, its share on PostgreSQL (engine.pglease.KeyLeases). Stop reading a
        key that is not returned at a checkpoint boundary, then ``release_keys`` it. When the
        database fails, none (this instance stops reading; its leases run out unless renewed)."""
        if self._keys is None:
            return set(keys)
        try:
            return self._keys.balance(keys)
        except StoreError as exc:
            self.log.warning(f"{exc}; reading no keys until the next try", extra={"event": "trigger_lease_failed"})
            return set()

    async def release_keys(self, keys: Iterable[str]) -> None:
        """Give up keys this instance stopped reading (at a checkpoint boundary)."""
        if self._keys is not None:
            try:
                self._keys.release(keys)
            except StoreError as exc:  # they expire, or our backend ends, by themselves
                self.log.warning(f"{exc}", extra={"event": "trigger_lease_failed"})

    def full(self) -> bool:
        return self._runs.full()

    def room(self) -> int:
        return self._runs.room()

    async def wait_for_room(self) -> None:
        await self._runs.wait_for_room()

    async def finished(self, run_id: str) -> str:
        return await self._runs.finished(run_id)


class Consumers:
    def __init__(self, engine: Any, runs: Any, metrics: Any, clock: Any = None):
        self.engine, self.runs, self.metrics = engine, runs, metrics
        self.clock = clock or SystemClock()
        self._scopes: dict[tuple[str, str], tuple[anyio.CancelScope, tuple]] = {}
        self._tg: Any = None
        self._stopped: anyio.Event | None = None

    async def run(self, table: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        self._stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self.sync(table)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Cancel every trigger's ``run`` and wait until each ``stop`` returned."""
        if self._tg is not None and self._stopped is not None:
            self._tg.cancel_scope.cancel()
            await self._stopped.wait()

    async def sync(self, table: Any) -> None:
        """Start, restart (definition changed) or stop pull triggers to match ``table``."""
        wanted: dict[tuple[str, str], PullEntry] = dict(table.pull)
        for key, (scope, version) in list(self._scopes.items()):
            if key not in wanted or wanted[key].version != version:
                scope.cancel()
                del self._scopes[key]
        for key, entry in wanted.items():
            if key not in self._scopes:
                self._scopes[key] = (await self._tg.start(self._task, entry), entry.version)

    async def _task(self, entry: PullEntry, *, task_status: Any) -> None:
        shared = getattr(self.engine.store, "backend", "sqlite") == "postgresql"
        how = getattr(entry.cls, "shared", "lease")
        if shared and how == "lease":
            await self._leased(entry, task_status=task_status)
            return
        keys = None
        if shared and how == "keys":  # every instance consumes, reading only the keys (shards) it holds
            from engine.pglease import KeyLeases

            try:
                keys = KeyLeases(self.engine.store, entry.flow.name, entry.name, ttl=self.LEASE_TTL)
            except StoreError as exc:  # its tables cannot be made: this trigger stops, the server serves on
                log.error("trigger stopped by an error: %s", exc,
                          extra={"event": "trigger_error", "flow": entry.flow.name, "trigger": entry.name})
                task_status.started(anyio.CancelScope())
                return
        try:
            with anyio.CancelScope() as outer:  # what sync() cancels: the restarts too
                backoff = None
                while await self._consume(entry, task_status=task_status, scope=outer, keys=keys):
                    task_status = anyio.TASK_STATUS_IGNORED  # (ready was reported by the first start)
                    backoff = backoff or Backoff(base=0.5, cap=30.0)  # the database is away: start it again later
                    await anyio.sleep(backoff.next())
        finally:
            if keys is not None:  # stopping gives every key and the membership up at once
                with anyio.CancelScope(shield=True):
                    keys.close()

    LEASE_TTL = 30.0  # seconds a trigger's (or a key's) lease lasts without renewal (renewed every third)
    STANDBY_POLL = 2.0  # seconds between an instance's tries for a trigger another one consumes

    async def _leased(self, entry: PullEntry, *, task_status: Any) -> None:
        """Consume only while this instance holds the trigger's lease; stand by otherwise
        (other instances on the database), and stop consuming if the lease is lost."""
        import asyncio

        from engine.pglease import TriggerLease

        extra = {"flow": entry.flow.name, "trigger": entry.name}
        store = self.engine.store
        lease = TriggerLease(store, entry.flow.name, entry.name, ttl=self.LEASE_TTL)
        loop = asyncio.get_running_loop()
        dropped = asyncio.Event()  # the connection that wrote the lease was lost: so was the lease

        def connection_lost() -> None:  # (the store may say so from a thread)
            loop.call_soon_threadsafe(dropped.set)
        store.on_connection_lost.append(connection_lost)
        with anyio.CancelScope() as outer:
            task_status.started(outer)
            try:
                while True:
                    dropped.clear()
                    if not await self._take(lease):
                        log.info("trigger consumed by another instance; standing by",
                                 extra={"event": "trigger_standby", **extra})
                        while not await self._take(lease):  # a killed holder's backend is gone at once: look often
                            await anyio.sleep(self.STANDBY_POLL)
                        dropped.clear()
                    lost, unavailable = [], False
                    async with anyio.create_task_group() as tg:
                        async def keep() -> None:
                            while True:
                                with anyio.move_on_after(self.LEASE_TTL / 3):
                                    await dropped.wait()
                                if dropped.is_set() or not await self._take(lease, retry=False):
                                    log.warning("trigger lease lost; this instance stops consuming",
                                                extra={"event": "trigger_lease_lost", **extra})
                                    lost.append(True)
                                    tg.cancel_scope.cancel()
                                    return
                        tg.start_soon(keep)
                        unavailable = await self._consume(entry, task_status=anyio.TASK_STATUS_IGNORED)
                        tg.cancel_scope.cancel()
                    if not lost and not unavailable:  # the trigger stopped by itself (an error, logged)
                        return
            finally:
                store.on_connection_lost.remove(connection_lost)
                with anyio.CancelScope(shield=True):
                    lease.release()

    async def _take(self, lease: Any, *, retry: bool = True) -> bool:
        """Take or renew the trigger's lease; while PostgreSQL cannot be reached, try again with
        backoff (``retry=False``: the lease counts as lost)."""
        backoff = Backoff(base=0.5, cap=30.0)
        while True:
            try:
                return lease.take()
            except StoreUnavailable:
                if not retry:
                    return False
                await anyio.sleep(backoff.next())

    async def _consume(self, entry: PullEntry, *, task_status: Any, scope: Any = None,
                       keys: Any = None) -> bool:
        """Run the trigger until it stops; True when it stopped because the state database could
        not be reached (start it again once it can)."""
        extra = {"flow": entry.flow.name, "trigger": entry.name}
        unavailable = False
        with anyio.CancelScope() as own:
            host = Host(entry, self.engine, self.runs, self.metrics, self.clock, keys)
            trigger = entry.cls(entry.definition, host)
            try:
                try:
                    await trigger.start()
                finally:
                    task_status.started(scope or own)
                log.info("trigger started", extra={"event": "trigger_started", **extra})
                await trigger.run()
            except Exception as exc:  # never let one trigger take the server down
                if self.engine.store.unavailable(exc):
                    unavailable = True
                    log.info("trigger paused: the state database cannot be reached; it starts again when it can",
                             extra={"event": "trigger_paused", **extra})
                else:
                    log.exception("trigger stopped by an error", extra={"event": "trigger_error", **extra})
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await trigger.stop()
                    except Exception:
                        log.exception("trigger failed to stop", extra={"event": "trigger_error", **extra})
                    log.info("trigger stopped", extra={"event": "trigger_stopped", **extra})
        return unavailable
