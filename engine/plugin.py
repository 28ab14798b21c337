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
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import anyio

from .errors import ActionError, RetryableError

__all__ = ["Node", "ConnectionSpec", "Connection", "Context", "ActionError", "RetryableError",
           "secret", "run_sync"]


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
    """

    kind: str
    description: str
    settings: dict
    client: Callable[["Connection"], Any] | None = None
    derived_secrets: Callable[[dict], list[str]] | None = None
    example: dict = field(default_factory=dict)

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

    def secret(self, name: str) -> str | None:
        return self._secrets.get(name)

    def get(self, name: str, default: Any = None) -> Any:
        """A setting or a secret by name."""
        if name in self._secrets:
            return self._secrets[name]
        return self.settings.get(name, default)

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.spec.client is None:
                raise ActionError(f"connection kind '{self.kind}' has no client", code="NoClient")
            self._client = self.spec.client(self)
        return self._client

    def secret_values(self) -> list[str]:
        values = [v for v in self._secrets.values() if v]
        if self.spec.derived_secrets:
            values += [v for v in self.spec.derived_secrets(dict(self._secrets)) if v]
        return values

    def __repr__(self) -> str:  # never show secrets
        return f"Connection({self.name!r}, kind={self.kind!r}, endpoint={self.endpoint!r})"


class Node:
    """One operation a flow can run. Subclass it and fill in the class attributes.

    ``type``          the action type name used in flows (``Compose``, ``twilio.SendSms``)
    ``title``         one line for listings
    ``description``   what it does (markdown)
    ``input_schema``  JSON Schema of the action's ``inputs``
    ``outputs``       JSON Schema (with descriptions) of what ``run`` returns
    ``connection``    the connection kind it needs, or None
    ``example``       a complete action definition, as it appears in a flow
    ``fields``        extra action-level properties (control actions: expression, actions, ...)
    ``lazy``          keys of ``inputs``/``fields`` the engine leaves unevaluated; the node
                      evaluates them itself with ``context.evaluate`` (e.g. Query's ``where``)
    ``container``     True for actions that run nested actions (they take no concurrency slot)
    ``placement``     "anywhere", "outside-loops" (not inside Foreach/Until) or "top-level"
    """

    type: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_schema: ClassVar[dict] = {"type": "object"}
    outputs: ClassVar[dict] = {}
    connection: ClassVar[str | None] = None
    example: ClassVar[dict] = {}
    fields: ClassVar[dict] = {}
    required_fields: ClassVar[tuple[str, ...]] = ()
    lazy: ClassVar[tuple[str, ...]] = ()
    container: ClassVar[bool] = False
    placement: ClassVar[str] = "anywhere"  # or "outside-loops", "top-level"
    inputs_required: ClassVar[bool] = False

    @classmethod
    def blocks(cls, action: dict) -> dict[str, dict]:
        """Nested action blocks of a container action: {block key: {name: action}}."""
        return {}

    @classmethod
    def check(cls, action: dict) -> list[tuple[str, str]]:
        """Semantic checks beyond the schema: [(sub-path, message)]."""
        return []

    async def run(self, inputs: dict, context: "Context") -> Any:
        raise NotImplementedError

    def replay(self, outputs: Any, context: "Context") -> None:
        """Re-apply side effects on run state when a finished step is reused (resume/rerun)."""


class Context:
    """What a running node may use. The executor builds one per attempt.

    connection      the action's Connection (client ready on first ``.client``), or None
    run_id          the run's id
    path            the action's path, e.g. ``loop[3]/notify``
    idempotency_key stable across retries, resumes and crashes: run id + path
    log             a logger whose messages have secrets redacted
    attempt         1 for the first attempt

    Cancellation (Terminate, a timeout, shutdown) cancels the node's coroutine, as anyio does;
    a blocking SDK call made through ``run_sync`` is abandoned in its worker thread.
    """

    def __init__(self, *, run_id: str, path: str, action: Any, connection: Connection | None,
                 log: logging.LoggerAdapter, attempt: int, runtime: Any, frame: Any):
        self.run_id = run_id
        self.path = path
        self.action = action
        self.connection = connection
        self.log = log
        self.attempt = attempt
        self.idempotency_key = f"{run_id}:{path}"
        self._runtime = runtime
        self._frame = frame

    # -- used by built-in nodes; vendor nodes rarely need these --------------------------
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
        self._runtime.skip_block(self, key)

    @property
    def variables(self) -> dict:
        return self._runtime.variables

    @property
    def run(self) -> Any:
        return self._runtime



async def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call in a worker thread; cancellation abandons the thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), abandon_on_cancel=True)


# -- inbound webhooks ---------------------------------------------------------------------

class AuthError(Exception):
    """A request failed trigger authentication: 401 (missing) or 403 (wrong/forged/expired)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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
