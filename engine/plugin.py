"""The contract between the engine and every node, built-in or vendor.

A node module (``nodes/<vendor>/__init__.py`` or any package registered under the
``flowrun.nodes`` entry-point group) exposes two lists::

    CONNECTIONS = [ConnectionSpec(...)]   # the connection kinds it owns (may be empty)
    NODES = [SendSms, FetchMessage, ...]  # Node subclasses, one per operation
    FILTERS = {"soql": quote_soql}        # optional: template filters it contributes

Importing such a module must be cheap: the vendor SDK is imported inside the
client factory or ``run``, never at module level.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import anyio

from .caseless import any_case  # noqa: F401  (nodes declare case-insensitive names with it)
from .compiled import Compiled, schema_problem  # noqa: F401  (nodes validate against a user's JSON Schema)
from .errors import ActionError, AuthError, RetryableError
from .state import Status
from .timestamps import unix_timestamp  # noqa: F401  (webhook verifiers read signed timestamps)
from .triggers import (Accepted, Clock, PullTrigger, PushTrigger, SystemClock, Trigger,  # noqa: F401
                       TriggerConfigError, TriggerHost)
from .vendor import (ErrorTable, Fault, Rule, Vendor, build_once, compact, endpoint_url, header,  # noqa: F401
                     inputs_schema, retry_after, scrub, status_is_retryable, trace_headers,
                     tracing_adapter, tracing_session)
from .telemetry import carrier as trace_carrier  # noqa: F401  (triggers read an incoming traceparent)

__all__ = ["Node", "ConnectionSpec", "Connection", "Context", "Variables", "Status", "ActionError",
           "RetryableError", "secret", "run_sync", "Job", "Pending", "run_sync_cancellable",
           # triggers (engine/triggers.py): node modules expose them as TRIGGERS = [...]
           "count", "excerpt", "Trigger", "PushTrigger", "PullTrigger", "TriggerHost", "TriggerConfigError", "Accepted",
           "Clock", "SystemClock",
           # the base vendor client (engine/vendor.py)
           "Vendor", "ErrorTable", "Rule", "Fault", "retry_after", "header", "compact",
           "inputs_schema", "endpoint_url", "status_is_retryable", "scrub",
           # W3C trace context (engine/telemetry.py): outgoing headers, an incoming carrier
           "trace_headers", "trace_carrier", "tracing_adapter", "tracing_session"]


def count(value: Any) -> int:
    """How many items ``value`` holds, for an ``effect`` line (a single value is one)."""
    return len(value) if isinstance(value, (list, tuple, dict)) else (0 if value is None else 1)


def excerpt(text: Any, limit: int = 60) -> str:
    """The first line of ``text``, at most ``limit`` characters, for an ``effect`` line."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def secret(description: str = "") -> dict:
    """JSON Schema of a connection setting that must come from an environment variable."""
    return {"type": "string", "format": "password", "description": description}


@dataclass
class ConnectionSpec:
    """A kind of connection: its settings schema and how to build its client.

    ``settings`` is a JSON Schema object; properties marked ``format: password`` are
    secrets and must be given in the connection file as ``secrets: {name: ENV_VAR}``.
    ``client(conn)`` builds the SDK client once per connection (lazy SDK import inside);
    the engine calls it on first use and caches the result on the Connection.
    ``derived_secrets(values)`` may return more strings to redact (e.g. a Basic token).
    ``vendor`` the kind's ``engine.vendor.Vendor``: the SDK it needs (checked by validate),
    the pip extra that installs it, and its error table.
    """

    kind: str
    description: str
    settings: dict
    client: Callable[["Connection"], Any] | None = None
    derived_secrets: Callable[[dict], list[str]] | None = None
    example: dict = field(default_factory=dict)
    vendor: Vendor | None = None

    @property
    def secret_names(self) -> list[str]:
        props = self.settings.get("properties", {})
        return [k for k, v in props.items() if v.get("format") == "password"]


class Connection:
    """A configured connection: settings + resolved secrets + the lazily built client."""

    def __init__(self, name: str, spec: ConnectionSpec, settings: dict, secrets: dict,
                 endpoint: str | None):
        self.name = name
        self.spec = spec
        self.kind = spec.kind
        self.settings = settings
        self._secrets = secrets
        self.endpoint = endpoint
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._issued: list[str] = []  # secrets obtained at run time (session and access tokens)
        self.redactor: Callable[[str], Any] | None = None  # set when the engine resolves it

    def secret(self, name: str) -> str | None:
        return self._secrets.get(name)

    def get(self, name: str, default: Any = None) -> Any:
        """A setting or a secret by name."""
        if name in self._secrets:
            return self._secrets[name]
        return self.settings.get(name, default)

    def _build_client(self) -> Any:
        if self.spec.client is None:
            raise ActionError(f"connection kind '{self.kind}' has no client", code="NoClient")
        return build_once(self, self._client_lock, lambda: self.spec.client(self))

    async def get_client(self) -> Any:
        """The SDK client, built in a worker thread on first use, at most once (a slow
        login never blocks the event loop; concurrent first uses wait for one build)."""
        if self._client is not None:
            return self._client
        return await anyio.to_thread.run_sync(self._build_client, abandon_on_cancel=True)

    def close(self) -> None:
        """Release the client when it holds something open (a producer to flush, a pool): its
        ``close()`` is called, once; errors are logged, never raised."""
        client, self._client = self._client, None
        close = getattr(client, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - shutting down: say so and go on
                logging.getLogger("flowrun.node").warning("closing the client of connection %r failed",
                                                          self.name, exc_info=True)

    def add_secret(self, value: str | None) -> None:
        """A secret the vendor issued at run time (a session token, an access token): redacted
        from then on, like the connection's own secrets, in every form (outputs, errors, the
        state database, logs). Client factories call it right after a sign-in."""
        if value and value not in self._issued:
            self._issued.append(value)
            add = getattr(self.redactor, "add", None)
            if add is not None:
                add(value)

    def secret_values(self) -> list[str]:
        values = [v for v in self._secrets.values() if v] + list(self._issued)
        if self.spec.derived_secrets:
            values += [v for v in self.spec.derived_secrets(dict(self._secrets)) if v]
        return values

    def __repr__(self) -> str:  # never show secrets
        return f"Connection({self.name!r}, kind={self.kind!r}, endpoint={self.endpoint!r})"


class Node:
    """One operation a flow can run. Subclass it and fill in the class attributes.

    What it is:
    ``type``          the action type name used in flows (``Compose``, ``twilio.SendSms``)
    ``title``         one line for listings
    ``description``   what it does (markdown)
    ``input_schema``  JSON Schema of the action's ``inputs``
    ``outputs``       JSON Schema (with descriptions) of what ``run`` returns
    ``connection``    the connection kind it needs, or None; a tuple of kinds when any of them
                      will do (geo.Geocode takes a ``mapbox`` or a ``google_maps`` connection)
    ``more_connections``  the key of ``inputs`` that lists more connections, by name, tried after
                      ``connection`` (a provider fallback); names are written in the flow file, of
                      the kinds ``connection`` allows; ``context.connection_named`` gives them
    ``example``       a complete action definition, as it appears in a flow
    ``example_outputs``  a sample of what ``run`` returns; `flowrun plan` stands it in for an
                      action it does not run (None: ``example_output()`` builds one from ``outputs``)
    ``effect(inputs)``   one line saying what running the action would change outside the run
                      ("would send SMS to +1555..."); None (the default) for an action that changes
                      nothing outside it. `flowrun plan` prints it instead of running the node
    ``reads_only``    the node only reads through its connection (a query, a GET, a geocode, a
                      rendering): `flowrun plan` notes "would read with ..." and stands its example
                      outputs in. A node with a connection declares one of the two: ``effect`` or
                      ``reads_only`` (tests/engine/test_plugin.py holds every built-in node to it)
    ``transport``     how ``run`` reaches outside the process. "python" (the default): through
                      Python sockets and the HTTP libraries `flowrun test` watches, so its network
                      guard blocks it and its cassettes record it. "native": a C library opens its
                      own sockets (librdkafka). "subprocess": a child process does the work (dbt).
                      `flowrun test` and `flowrun plan` cannot see the last two: such an action
                      that no mock answers fails before it runs (tests/engine/test_plugin.py holds
                      every built-in node to an honest declaration)
    ``fields``        extra action-level properties (control actions: expression, actions, ...)

    What the engine must know about it (the engine names no node; it reads these):
    ``nested``        keys of the action that hold nested action blocks (If: actions, else);
                      ``blocks()`` maps them to {block key: {name: action}}
    ``loops``         runs its block once per item or iteration (``item()``, ``items()`` inside)
    ``after_block``   fields evaluated after each pass of the block, which may read the block's
                      actions and the loop's own index (Until's ``expression``)
    ``owns_limit``    the action's ``limit`` block is the node's (Until), not an action timeout
    ``declares_variables``  declares run variables (``declared_variables()`` names them)
    ``replies``       sends the reply to the HTTP request that started the run (Response)
    ``holds_slot``    takes one of the engine's concurrency slots while it runs (False for
                      actions that wait on other actions: containers, child runs)
    ``idempotent``    repeating the operation is harmless (the vendor takes an idempotency key, or
                      the operation is naturally idempotent). False for sends and creates with no
                      key (an SMS, an email, a created record): the engine records such an action
                      as in flight before it starts, so after a crash it knows the action may have
                      happened; ``onInterrupted: fail`` then makes it at-most-once
    ``connection_optional``  ``connection`` may be left out
    ``placement``     "anywhere", "outside-loops" (not inside a loop) or "top-level"
    ``lazy``          keys of ``inputs``/``fields`` the engine leaves unevaluated; the node
                      evaluates them itself with ``context.evaluate`` (e.g. Query's ``where``)
    """

    type: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_schema: ClassVar[dict] = {"type": "object"}
    outputs: ClassVar[dict] = {}
    connection: ClassVar[str | tuple[str, ...] | None] = None
    more_connections: ClassVar[str | None] = None
    example: ClassVar[dict] = {}
    example_outputs: ClassVar[Any] = None
    reads_only: ClassVar[bool] = False
    transport: ClassVar[str] = "python"  # or "native", "subprocess"
    fields: ClassVar[dict] = {}
    required_fields: ClassVar[tuple[str, ...]] = ()
    lazy: ClassVar[tuple[str, ...]] = ()
    nested: ClassVar[tuple[str, ...]] = ()
    loops: ClassVar[bool] = False
    after_block: ClassVar[tuple[str, ...]] = ()
    owns_limit: ClassVar[bool] = False
    declares_variables: ClassVar[bool] = False
    replies: ClassVar[bool] = False
    holds_slot: ClassVar[bool] = True
    idempotent: ClassVar[bool] = True
    connection_optional: ClassVar[bool] = False
    placement: ClassVar[str] = "anywhere"  # or "outside-loops", "top-level"
    inputs_required: ClassVar[bool] = False

    @classmethod
    def connection_kinds(cls) -> tuple[str, ...]:
        """The connection kinds ``connection`` accepts (none, one or several)."""
        kind = cls.connection
        return () if not kind else (kind,) if isinstance(kind, str) else tuple(kind)

    @classmethod
    def more_connection_names(cls, action: dict) -> list[str]:
        """The connection names the action lists under ``inputs[more_connections]`` (strings only;
        the loader reports anything else)."""
        inputs = action.get("inputs") if isinstance(action, dict) else None
        names = inputs.get(cls.more_connections) if cls.more_connections and isinstance(inputs, dict) else None
        if isinstance(names, str):
            names = [names]
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    @classmethod
    def is_container(cls) -> bool:
        """True for actions that run nested actions (If, Scope, Foreach, ...)."""
        return bool(cls.nested)

    @classmethod
    def takes_slot(cls) -> bool:
        """A container never holds a slot (what runs inside it does)."""
        return cls.holds_slot and not cls.nested

    @classmethod
    def blocks(cls, action: dict) -> dict[str, dict]:
        """Nested action blocks of a container action: {block key: {name: action}}."""
        return {}

    @classmethod
    def declared_variables(cls, action: dict) -> list[str]:
        """Names of the run variables this action declares (``declares_variables`` nodes)."""
        return []

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        """Semantic checks beyond the schema: [(sub-path, message)]."""
        return []

    @classmethod
    def warnings(cls, action: dict) -> list[tuple[str, str]]:
        """Validate-time warnings: [(sub-path, message)] about a flow that is valid but likely
        wrong (e.g. a value templated into SQL text instead of bound). ``flowrun validate``
        prints them; they fail nothing."""
        return []

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        """What running the action with ``inputs`` would change outside the run, in one line
        starting "would ..."; None when it changes nothing (the default)."""
        return None

    @classmethod
    def guard_sees(cls) -> bool:
        """Its calls go through Python's sockets and HTTP libraries (``transport`` "python"): a
        flow test's network guard can block them and a cassette can record them."""
        return cls.transport == "python"

    @classmethod
    def has_effect(cls) -> bool:
        """The node declares a side effect (``effect`` is overridden)."""
        return cls.effect.__func__ is not Node.effect.__func__

    @classmethod
    def example_output(cls) -> Any:
        """``example_outputs``, or a sample built from the ``outputs`` schema."""
        if cls.example_outputs is not None:
            return cls.example_outputs
        return sample(cls.outputs)

    async def run(self, inputs: dict, context: "Context") -> Any:
        raise NotImplementedError

    def replay(self, outputs: Any, context: "Context") -> None:
        """Re-apply side effects on run state when a finished step is reused (resume/rerun)."""


def sample(schema: Any, name: str = "value", depth: int = 0) -> Any:
    """A value of the shape ``schema`` describes: its first example, default or enum value, else
    an object of samples, a one-item array, ``"<name>"`` for a string, 0, false or null."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    props = schema.get("properties")
    if kind == "object" or (kind is None and isinstance(props, dict)):
        return {k: sample(v, k, depth + 1) for k, v in (props or {}).items()}
    if kind == "array":
        item = sample(schema.get("items"), name, depth + 1)
        return [] if item is None else [item]
    return {"string": f"<{name}>", "integer": 0, "number": 0, "boolean": False}.get(kind)


class Variables:
    """The run's variables: a value and a declared type (string, integer, ...) each."""

    __slots__ = ("values", "kinds")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}

    def declare(self, name: str, kind: str, value: Any) -> None:
        self.values[name] = value
        self.kinds[name] = kind

    def kind(self, name: str) -> str:
        return self.kinds[name]

    def get(self, name: str) -> Any:
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def snapshot(self) -> dict[str, Any]:
        return dict(self.values)


class Context:
    """What a running node may use. The executor builds one per attempt.

    connection      the action's Connection (``await context.client()`` builds its client), or None
    run_id          the run's id
    path            the action's path, e.g. ``loop[3]/notify``
    action          the action as loaded (``action.raw`` is what the flow file says)
    idempotency_key stable across retries, resumes and crashes: run id + path
    log             a logger whose messages have secrets redacted
    attempt         1 for the first attempt

    Capabilities (what a node may ask of the run it is part of):
    ``evaluate``, ``run_block``, ``skip_block``, ``variables``, ``terminate``, ``respond``,
    ``run_child``, ``wait``, ``wait_until``, ``now``.

    Cancellation (Terminate, a timeout, shutdown) cancels the node's coroutine, as anyio does;
    a blocking SDK call made through ``run_sync`` is abandoned in its worker thread, so use
    ``run_sync_cancellable`` (or a ``Job``) where the remote side must be told to stop.
    """

    __slots__ = ("run_id", "path", "action", "connection", "log", "attempt", "idempotency_key",
                 "_runtime", "_frame", "_result")

    def __init__(self, *, run_id: str, path: str, action: Any, connection: Connection | None,
                 log: logging.LoggerAdapter, attempt: int, runtime: Any, frame: Any, result: Any = None):
        self.run_id = run_id
        self.path = path
        self.action = action
        self.connection = connection
        self.log = log
        self.attempt = attempt
        self.idempotency_key = f"{run_id}:{path}"
        self._runtime = runtime
        self._frame = frame
        self._result = result

    def connection_named(self, name: str) -> Connection:
        """One of the connections the action lists under its node's ``more_connections``."""
        if name not in self.action.node.more_connection_names(self.action.raw):
            raise ActionError(f"'{self.path}' does not list connection '{name}'", code="NoConnection")
        conn = self._runtime.connections.get(name)
        if conn is None:
            raise ActionError(f"connection '{name}' is not resolved for '{self.path}'", code="NoConnection")
        return conn

    async def client(self) -> Any:
        """The connection's SDK client, built once per connection in a worker thread."""
        if self.connection is None:
            raise ActionError(f"'{self.path}' has no connection", code="NoConnection")
        return await self.connection.get_client()

    def evaluate(self, value: Any, **loop: Any) -> Any:
        """Evaluate a template value now, optionally with ``item``/``index`` bound."""
        return self._runtime.evaluate(value, self._frame, **loop)

    async def evaluate_async(self, value: Any, **loop: Any) -> Any:
        """``evaluate``, but an evaluation that needs more than a few milliseconds runs in a
        worker thread, so the event loop is never held by it (prefer this in ``run``)."""
        return await self._runtime.evaluate_async(value, self._frame, **loop)

    async def run_block(self, key: str, *, item: Any = None, index: int | None = None,
                        iteration: str | None = None) -> str:
        """Run one of this container's nested blocks; returns its folded status."""
        return await self._runtime.run_block(self, key, item=item, index=index, iteration=iteration)

    def skip_block(self, key: str) -> None:
        """Record every action of a nested block as Skipped (the branch not taken)."""
        self._runtime.skip_block(self, key)

    @property
    def variables(self) -> Variables:
        """The run's variables."""
        return self._runtime.variables

    def terminate(self, status: str, error: dict | None = None) -> None:
        """End the run with ``status`` once this action finishes; what is in flight is cancelled."""
        self._runtime.request_terminate(status, error)

    def respond(self, reply: dict, *, replayed: bool = False) -> None:
        """Send the reply to the request that started the run (once per run). ``replayed``:
        a reused step's reply, already sent before a crash: noted, not sent again."""
        self._runtime.respond(reply, replayed=replayed)

    @property
    def responded(self) -> bool:
        return self._runtime.response is not None

    @property
    def flow_file(self) -> str:
        """The file of the flow this action belongs to (child flows are found beside it)."""
        return self._runtime.flow.file

    async def run_child(self, flow: str, body: Any = None, parameters: dict | None = None, *,
                        headers: dict | None = None, trigger: str | None = None) -> Any:
        """Run the flow file ``flow`` (relative to this flow) as a child run; its result. The
        child's trigger outputs hold ``body`` and ``headers`` (names lower-cased, as a request's)."""
        return await self._runtime.run_child(self, flow, body, parameters, headers=headers, trigger=trigger)

    # -- durable waiting (Wait, long-running jobs) ---------------------------------------------
    async def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, durably: the wake-up time is recorded in the step, so a resumed run
        waits only what is left (and under ``flowrun serve`` a run that only waits is parked)."""
        await self._runtime.durable_wait(self, seconds=seconds)

    async def wait_until(self, timestamp: float) -> None:
        """Sleep until ``timestamp`` (seconds since the epoch), durably, like ``wait``."""
        await self._runtime.durable_wait(self, until=timestamp)

    def now(self) -> float:
        """The engine's clock (injectable in tests): seconds since the epoch."""
        return self._runtime.engine.clock.now()

    # -- files, a cache, sealed values ----------------------------------------------------------
    def save_file(self, data: bytes, *, name: str, content_type: str) -> dict:
        """Keep a file the action produced (an exported PDF, a rendered PNG) in the blob store;
        returns the reference to put in the outputs: ``{"$file": sha256, "name", "contentType",
        "size"}``. Other nodes take the reference (SendGrid attachments) and ``read_file`` it."""
        digest = self._runtime.store.put_file(data, run_id=self.run_id)
        return {"$file": digest, "name": name, "contentType": content_type, "size": len(data)}

    def read_file(self, ref: Any) -> bytes:
        """The bytes of a ``save_file`` reference (ActionError ``FileNotFound`` when it is not one,
        the file is gone, or no run of this run's family kept it: a reference that came in a
        payload, naming another run's file, reads nothing)."""
        return self._runtime.store.get_file(ref.get("$file") if isinstance(ref, dict) else None, run_id=self.run_id)

    def cache_get(self, namespace: str, key: str) -> Any:
        """A value ``cache_put`` kept in the state database, until its TTL (engine clock) ran out."""
        return self._runtime.store.cache_get(namespace, key, self.now())

    def cache_put(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        """Keep a JSON value in the state database for ``ttl`` seconds (redacted like every write)."""
        self._runtime.store.cache_put(namespace, key, value, ttl, self.now())

    def seal(self, value: str, *, ttl: float) -> str:
        """A stand-in for a secret the action produced (an embed token) to put in its outputs:
        the stand-in is what the state database, logs and templates see; a ``Response`` that
        carries it sends the value itself, in this run's reply only (``engine.sealed``). Kept in
        memory for ``ttl`` s."""
        from . import sealed

        return sealed.seal(value, ttl=ttl, now=self.now(), run_id=self.run_id)



async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call in a worker thread; cancellation abandons the thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), abandon_on_cancel=True)


async def run_sync_cancellable(fn: Callable[[], Any], cancel: Callable[[], Any], *,
                               cancel_timeout: float = 30.0) -> Any:
    """Run a blocking call in a worker thread; on cancellation (a timeout, Terminate, shutdown)
    call ``cancel()`` in another thread first, shielded, so the remote side is told (kill the
    subprocess, abort the query), then abandon the thread. ``cancel`` gets ``cancel_timeout``
    seconds; its errors are logged, never raised."""
    try:
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(cancel_timeout):
            try:
                await anyio.to_thread.run_sync(cancel, abandon_on_cancel=True)
            except Exception:
                logging.getLogger("flowrun.node").warning("cancel hook failed", exc_info=True)
        raise


# -- long-running jobs ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """What ``Job.poll`` returns while the remote job is still running.

    ``after`` overrides the next poll's delay in seconds (e.g. a vendor's Retry-After);
    ``progress`` is logged at debug level."""

    after: float | None = None
    progress: Any = None


class Job(Node):
    """A node that starts a remote job and waits for it durably (Databricks runs, Snowflake
    queries, dbt invocations, Tableau extract refreshes, Looker renders).

    Subclass it and implement three coroutines instead of ``run``:

    ``start(inputs, context) -> handle``  start the job; the handle is a small JSON-able dict
                                          (job id, query id) the engine commits to the step
                                          record before the first poll
    ``poll(handle, context)``             ``Pending(...)`` while it runs, else the action's
                                          outputs; raise ``ActionError`` when the job failed
                                          (a ``RetryableError`` means the *status check*
                                          failed: the engine polls again, up to
                                          ``max_poll_errors`` times in a row)
    ``cancel(handle, context)``           tell the remote side to stop (cancel-run,
                                          abort-query, kill the process); called on a
                                          timeout, Terminate or run cancellation, shielded,
                                          within ``cancel_timeout`` seconds

    Polls are spaced ``poll_interval`` seconds apart, multiplied by ``backoff`` after each
    Pending up to ``max_poll_interval``. After a crash, ``flowrun resume`` polls the
    recorded handle and never calls ``start`` again. A retry (``retryPolicy``) after a
    retryable error from ``start`` starts again; a job that ended in an error is not retried.
    """

    poll_interval: ClassVar[float] = 5.0
    max_poll_interval: ClassVar[float] = 60.0
    backoff: ClassVar[float] = 1.5
    cancel_timeout: ClassVar[float] = 30.0
    max_poll_errors: ClassVar[int] = 5
    max_after: ClassVar[float] = 86_400.0  # the longest wait a Pending.after may impose (a hostile
    # Retry-After of years, or inf, must not strand the job; NaN falls back to the backoff)

    async def start(self, inputs: Any, context: "Context") -> dict:
        raise NotImplementedError

    async def poll(self, handle: dict, context: "Context") -> Any:
        raise NotImplementedError

    async def cancel(self, handle: dict, context: "Context") -> None:
        """The default cannot stop anything; override it whenever the vendor can."""

    async def run(self, inputs: Any, context: "Context") -> Any:
        return await context._runtime.run_job(self, inputs, context)


# -- inbound webhooks ---------------------------------------------------------------------

@dataclass
class InboundRequest:
    """What arrived at a trigger, as the listener hands it to a verifier."""

    method: str
    url: str  # the public URL the sender signed (base URL configurable behind proxies)
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, list[str]] | None = None  # parsed when form-encoded


class WebhookAuth:
    """A way to authenticate inbound requests, declared by a vendor module (``AUTH = [...]``).

    ``kind`` is what a trigger names in ``auth: {type: <kind>, connection: <name>}``.
    ``verify`` raises AuthError when the request must be refused; it may return a
    de-duplication key (e.g. Stripe's event id) or None.
    """

    kind: ClassVar[str]
    connection: ClassVar[str | None] = None  # connection kind holding the secret
    options: ClassVar[dict] = {}  # JSON Schema of extra options in the trigger's auth block
    # for the generated docs (engine.docs); the docstring stands in for a missing description
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    header: ClassVar[str | None] = None  # the signature / credential header it reads
    example: ClassVar[dict] = {}  # the trigger's auth block, e.g. {type: stripe, connection: stripe}

    def verify(self, request: InboundRequest, connection: Connection | None,
               options: dict) -> str | None:
        raise NotImplementedError

    def handshake(self, request: InboundRequest, connection: Connection | None,
                  options: dict) -> tuple[int, dict[str, str], bytes] | None:
        """Answer a protocol handshake without starting a run, or return None.

        Some senders prove that an endpoint wants their deliveries before sending any
        (a subscription validation event, an OPTIONS pre-flight). The listener calls this
        before ``verify``; a ``(status, headers, body)`` answer is sent back as is, and
        no run starts. ``AuthError`` refuses the request. The default answers nothing.
        """
        return None
