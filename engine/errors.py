"""Every error flowrun raises, in one place.

    FlowrunError                     base of everything below
    ├── FlowError                    a flow file is invalid (carries every Problem found)
    ├── ConnectionError_             connections.yaml is invalid, or a secret is missing
    ├── ParameterError               a run's parameters are unknown, missing or of the wrong type
    ├── ConcurrencyLimit             a run cannot be queued: maxQueued runs of its key already wait
    ├── ReplayError                  a stored request cannot be replayed
    ├── CassetteError                a flow test's cassette file cannot be used
    ├── FiringError                  a trigger's conditions or splitOn failed on a firing (400)
    ├── StoreError                   the state database cannot be used (or a run is unknown)
    │   ├── StoreUnavailable         PostgreSQL cannot be reached now (refused, restarted, cut
    │   │                            off): transient, retried with backoff (503 in serve)
    │   └── RunBusy                  the run is being executed by another process or engine
    │       └── LeaseLost            this process stopped executing the run: its lease ended
    │                                (its database connection was lost); whoever claims it resumes it
    └── ActionError                  an action failed while running; becomes the step's error
        ├── RetryableError           the same call may succeed later (timeouts, 429, 5xx)
        ├── ExpressionError          a template failed to evaluate (undefined name, bad call)
        │   ├── InvalidTemplate      an `@` expression failed as Logic Apps words it (function, argument)
        │   └── ExpressionLimit      a template went past its time, size or operation budget
        ├── InputError               resolved inputs do not match the node's input schema
        └── OutputTooLarge           a value is over the store's hard cap (nothing truncated)
    AuthError                        an inbound request failed trigger authentication (401/403);
                                     not a FlowrunError: the listener answers it, nothing fails
    BodyError (ValueError)           an inbound body cannot be read as its content type says (400)
    JsonLimit (ValueError)           JSON that is malformed or past a limit (depth, digits, UTF-8)
    TriggerConfigError (ValueError)  a trigger definition the trigger cannot use (problem lines)
    Refused                          a web UI request answered with a message page (its status)
    ExpressionSyntaxError (ValueError)  an `@` expression that does not compile (syntax, unknown
                                     function, argument count), with the offset in its field
    NetworkBlocked (ConnectionRefusedError)  a socket connect or lookup during flow test/plan; the
                                     SDK sees a refused connection, the test names the action
    CassetteMiss (ConnectionError)   a replayed call its cassette does not hold (as NetworkBlocked)

Nodes raise ActionError or RetryableError (usually through their vendor's
``map_errors``); the executor turns them into a step's ``Failed`` status and
retries only RetryableError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where it is and what is wrong."""

    file: str
    line: int
    column: int
    path: str  # dotted path in the flow, e.g. actions.notify.inputs.to
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class FlowrunError(Exception):
    """Base class of flowrun's errors."""


class FlowError(FlowrunError):
    """A flow (or connections) file has problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConnectionError_(FlowrunError):
    """A connection cannot be built: unknown, badly configured or missing a secret."""


class FiringError(FlowrunError):
    """A trigger's conditions or splitOn could not be evaluated on this firing (the caller's 400)."""


class StoreError(FlowrunError):
    """The state database is unusable, or the run asked for does not exist."""


class ConcurrencyLimit(FlowrunError):
    """A run cannot be queued: ``maxQueued`` runs of its concurrency key already wait (429 in serve)."""


class StoreUnavailable(StoreError):
    """PostgreSQL cannot be reached now (refused, restarting, the connection cut): transient,
    unlike a bad URL or a refused login. The store reconnects with backoff (engine.pgstore)."""


class RunBusy(StoreError):
    """The run is being executed elsewhere (another ``flowrun resume``, ``serve``): not run twice."""


class LeaseLost(RunBusy):
    """This process stopped executing a run whose lease ended under it: the database connection
    that wrote the lease was lost, so its backend, so the lease. Not a failure of the run: it
    stays Running and whoever claims it next (this process included) resumes it."""


class ActionError(FlowrunError):
    """An action failed. ``code`` is a short machine-readable reason; ``details`` is JSON-able."""

    retryable = False

    def __init__(self, message: str, *, code: str = "ActionFailed", details: Any = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details
        self.retry_after = retry_after

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class RetryableError(ActionError):
    """An action failed in a way that may pass on a later attempt."""

    retryable = True


class ExpressionError(ActionError):
    """A template could not be evaluated."""

    def __init__(self, message: str, **kw: Any):
        kw.setdefault("code", "ExpressionError")
        super().__init__(message, **kw)


class InvalidTemplate(ExpressionError):
    """A runtime error of an `@` expression, named as Logic Apps names it (code InvalidTemplate)."""

    def __init__(self, message: str, **kw: Any):
        kw.setdefault("code", "InvalidTemplate")
        super().__init__(message, **kw)


class ExpressionLimit(ExpressionError):
    """A template went past what one evaluation may spend (time, size of what it builds,
    operations); see engine.sandbox.Limits."""

    def __init__(self, message: str, **kw: Any):
        kw.setdefault("code", "ExpressionLimit")
        super().__init__(message, **kw)


class InputError(ActionError):
    """Resolved inputs do not match the node's input schema."""

    def __init__(self, message: str, **kw: Any):
        kw.setdefault("code", "InvalidInputs")
        super().__init__(message, **kw)


class OutputTooLarge(ActionError):
    """A resolved input or output is bigger than the store's hard cap."""

    def __init__(self, size: int, cap: int):
        super().__init__(f"a value of {size} bytes (resolved inputs or outputs) exceeds the hard cap "
                         f"of {cap} bytes; nothing was truncated, the action failed",
                         code="OutputTooLarge")


class ParameterError(FlowrunError):
    """A run's parameters are unknown, missing or not of the declared type."""


class AuthError(Exception):
    """A request failed trigger authentication: 401 (missing) or 403 (wrong/forged/expired)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ReplayError(FlowrunError):
    """A stored request cannot be replayed (none stored, trigger gone, body no longer valid)."""


class Refused(Exception):
    """A request the web UI answers with a message page: ``status`` and what to do about it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class BodyError(ValueError):
    """The body cannot be read as its content type says (400)."""


class TriggerConfigError(ValueError):
    """A trigger definition the schema let through but the trigger cannot use."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))
        self.problems = problems


class ExpressionSyntaxError(ValueError):
    """An `@` field that does not compile; ``offset`` is where in the field (0-based)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


class JsonLimit(ValueError):
    """JSON that is malformed or exceeds a limit; the message names which."""


class CassetteError(FlowrunError):
    """A flow test's cassette file cannot be used (unreadable, not a cassette)."""


class NetworkBlocked(ConnectionRefusedError):
    """What a blocked connect or lookup raises inside an SDK during ``flowrun test``/``plan`` (a
    ConnectionError, as a refused connection would be: the SDK maps it as it maps any)."""


class CassetteMiss(ConnectionError):
    """A replayed call the cassette does not hold (the SDK sees a failed connection)."""
