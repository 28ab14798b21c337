"""The trigger contract: what starts a run, declared by node modules like nodes are.

A node module exposes ``TRIGGERS = [Request, Recurrence, ...]`` beside ``NODES``; the
registry indexes them by ``type`` and the flow schema gets one branch per type. Nodes and
triggers import this through ``engine.plugin``. A trigger class declares:

``type``          the name flows use (``type: Request``)
``title``         one line for listings; ``description`` (markdown)
``config``        JSON Schema of the trigger's own keys in a flow (``{"recurrence": {...}}``)
``required``      which of those keys a definition must have
``example``       a complete trigger definition, as it appears under ``triggers:``
``mode``          how it runs:

- ``"push"``: the sender calls us. ``flowrun serve`` routes HTTP requests to it at
  ``/flows/{flow}/triggers/{name}[/{relative path}]`` and runs the request pipeline
  (authentication, de-duplication, body schema, commit, reply). Push triggers take the
  common ``auth`` (required) and ``dedupe`` keys. See ``PushTrigger``.
- ``"pull"``: a long-lived consumer (a schedule, Kafka, SQS, Kinesis). ``flowrun serve``
  calls ``start()``, runs ``run()`` in a task until it stops the trigger (shutdown, or the
  flow changed on reload), then calls ``stop()``. It reaches the engine only through its
  ``TriggerHost``: ``accept`` a run, read and save checkpoints, the clock, a logger.
  See ``PullTrigger``.
- ``"manual"``: nothing is served; runs start from ``flowrun run``.

An instance is bound to one trigger of one flow: ``cls(definition, host)``. The
constructor checks the definition beyond the schema and raises ``TriggerConfigError``
with every problem (``(sub-path, message)``, e.g. ``("recurrence.timeZone", "...")``); it
must be cheap and do no I/O (the listener builds one per flow load; ``start`` opens things).
"""
from __future__ import annotations

from .clock import Clock
from .errors import TriggerConfigError  # noqa: F401  (its home is engine.errors)

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Protocol

__all__ = ["Trigger", "PushTrigger", "PullTrigger", "TriggerHost", "TriggerConfigError", "Accepted",
           "Clock", "SystemClock", "PUSH_KEYS"]

# Keys every push trigger takes, whatever its type: the listener's request pipeline uses them.
PUSH_KEYS: dict[str, dict] = {
    "auth": {
        "type": "object", "required": ["type"],
        "description": "how callers authenticate: none (explicit), key, hmac, or a kind a node module "
                       "declares (stripe, twilio, eventgrid ...); other keys are that kind's options",
        "properties": {"type": {"type": "string"},
                       "connection": {"type": "string", "description": "connection holding the secret"}},
    },
    "dedupe": {"type": "string", "description": "{{ template }} over the request; a redelivery "
                                                "with the same value starts no second run"},
}


@dataclass(frozen=True)
class Accepted:
    """What ``TriggerHost.accept`` returns: the run's id, and whether it already existed
    (the same de-duplication key was accepted before; no second run was started)."""

    run_id: str
    duplicate: bool = False


SystemClock = Clock  # the wall clock (engine.clock)


class TriggerHost(Protocol):
    """The capabilities ``flowrun serve`` gives a pull trigger (one host per flow trigger).

    ``accept(payload, dedupe_key, checkpoint=...)`` commits a run whose ``triggerOutputs()``
    is ``payload`` (a dict; ``body`` is ``triggerBody()``) and returns only once the commit
    is durable; the run then executes. A ``dedupe_key`` accepted before gives the first
    run back (``duplicate=True``) and starts nothing. ``checkpoint`` ({key: value}) is saved
    in the same transaction as the run: after a crash, the checkpoint and the runs agree.
    ``request`` adds to what is stored with the run for ``flowrun replay``.

    ``client()`` is the SDK client of the trigger's ``connection`` (a trigger class that
    declares ``connection = "<kind>"``), built once per connection in a worker thread, as
    ``Context.client()`` is for nodes. ``full()`` is True while the runs in flight are at
    ``--max-in-flight`` (a stream consumer pauses its partitions then, and resumes once it
    is False: ``wait_for_room()`` returns then); ``room()`` is how many more runs may start
    before that (a consumer takes no more messages at once). ``finished(run_id)`` waits for a run this
    server executes to end and gives its final status (a queue consumer that deletes a
    message only after its run succeeded waits on it).

    ``lease_keys(keys)`` (a ``shared = "keys"`` trigger) gives the keys among ``keys`` (its
    partitions or shards readable now) that this instance reads: all of them with one
    instance (SQLite), its fair share among the instances on a PostgreSQL database. Call it
    again within ``lease_every`` seconds (that renews the leases) and whenever the keys
    change. A key you read that is no longer returned (another instance joined, or the
    lease was lost) stays yours until you stop reading it at a checkpoint boundary and call
    ``release_keys([key])``; so is a key you finished (a drained shard).
    """

    flow_name: str
    trigger_name: str
    clock: Clock
    log: logging.LoggerAdapter

    async def accept(self, payload: dict, dedupe_key: str | None = None, *,
                     checkpoint: dict[str, Any] | None = None, request: dict | None = None,
                     trace: dict | None = None) -> Accepted: ...

    def checkpoint(self, key: str = "") -> Any: ...

    async def save_checkpoint(self, key: str, value: Any) -> None: ...

    def count(self, outcome: str, n: int = 1) -> None: ...

    async def client(self) -> Any: ...

    def full(self) -> bool: ...

    def room(self) -> int: ...

    async def wait_for_room(self) -> None: ...

    async def finished(self, run_id: str) -> str: ...

    lease_every: float

    async def lease_keys(self, keys: Iterable[str]) -> set[str]: ...

    async def release_keys(self, keys: Iterable[str]) -> None: ...


class Trigger:
    """One kind of trigger. Subclass ``PushTrigger`` or ``PullTrigger`` (or this, for manual)."""

    type: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config: ClassVar[dict] = {}
    required: ClassVar[tuple[str, ...]] = ()
    example: ClassVar[dict] = {}
    mode: ClassVar[str] = "manual"
    connection: ClassVar[str | None] = None  # the connection kind it reads from (a `connection:` key)

    def __init__(self, definition: dict, host: Any = None):
        self.definition = definition
        self.host = host


class PushTrigger(Trigger):
    """Requests reach it over HTTP. The listener owns auth, dedupe and replies; the trigger
    says where it listens and what a valid body is.

    ``method``         the HTTP method it takes
    ``relative_path``  a path under the trigger's URL with ``{name}`` parameters, or None
    ``schema``         JSON Schema the body must match, or None (also used for OpenAPI)
    """

    mode: ClassVar[str] = "push"
    method: str = "POST"
    relative_path: str | None = None
    schema: dict | None = None

    def match(self, rest: str) -> dict[str, str] | None:
        """Relative path parameters of ``rest`` (the path after the trigger's URL), or None
        when it is not this trigger's path."""
        return {} if not rest.strip("/") else None

    def body_problems(self, body: Any) -> list[dict]:
        """Every way ``body`` fails the trigger's schema: ``[{"path": "/a/0", "message": ...}]``."""
        return []


class PullTrigger(Trigger):
    """A long-lived consumer run by ``flowrun serve``: ``start`` (open clients, read the
    checkpoint), ``run`` (consume until cancelled, ``accept`` one run per message), ``stop``
    (close). Commit a message's checkpoint with its run (``accept(..., checkpoint=...)``)
    and de-duplicate on the message's id, so a crash at any point neither loses a message
    nor starts a second run for it.

    ``limited``  True: ``accept`` waits while ``--max-in-flight`` runs execute (back
                 pressure on the source); False (schedules): never waits.
    ``shared``   several ``serve`` on one PostgreSQL database: ``"lease"``, one instance
                 consumes at a time and the others stand by (engine.pglease.TriggerLease); ``"all"``,
                 every instance consumes, the source or the de-duplication key coordinating them
                 (a Kafka consumer group, SQS visibility, a schedule's scheduled time); ``"keys"``,
                 every instance consumes the keys (shards, partitions) it holds a lease on, an even
                 share of them, through ``host.lease_keys`` (engine.pglease.KeyLeases; Kinesis).
    """

    mode: ClassVar[str] = "pull"
    limited: ClassVar[bool] = True
    shared: ClassVar[str] = "lease"

    async def start(self) -> None:
        """Prepare to consume; the server is not ready until every start returned."""

    async def run(self) -> None:
        """Consume until cancelled."""
        import anyio

        await anyio.sleep_forever()

    async def stop(self) -> None:
        """Release what ``start`` opened (called after ``run`` was cancelled)."""
