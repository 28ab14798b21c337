"""The Monte Carlo connection: an API key (id + token), the client factory and the one place
pycarlo's errors are mapped.

``pycarlo`` is imported only inside ``build_client``, ``MonteCarloVendor`` and the nodes'
``run``. pycarlo retries a failed request by itself (exponential backoff, up to ~25 s); the
calls flowrun makes directly (Query, GetIncidents, circuit-breaker polls) disable that, so an
action's ``retryPolicy`` is the only retry loop. Its services (the circuit breaker's trigger,
the dbt importer) keep their own.
"""
from __future__ import annotations

from typing import Any

from engine.plugin import (ActionError, Connection, ConnectionSpec, Fault, RetryableError, Rule,
                           Vendor, secret, trace_headers)

DEFAULT_ENDPOINT = "https://api.getmontecarlo.com/graphql"

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["api_key_id", "api_token"],
    "properties": {
        "api_key_id": secret("API key id (x-mcd-id)."),
        "api_token": secret("API key token (x-mcd-token)."),
        "timeout": {"type": "integer", "minimum": 1, "maximum": 30, "default": 30,
                    "description": "Seconds to wait for one GraphQL response (Monte Carlo's "
                                   "limit is 30)."},
    },
}


def build_client(conn: Connection) -> Any:
    """One ``pycarlo.core.Client`` per connection. ``endpoint`` replaces the GraphQL URL."""
    key_id, token = conn.get("api_key_id"), conn.get("api_token")
    if not key_id or not token:
        raise ActionError(f"connection '{conn.name}' needs the api_key_id and api_token secrets",
                          code="MissingSetting")
    from pycarlo.core import Client, Session

    return Client(session=Session(mcd_id=key_id, mcd_token=token,
                                  endpoint=conn.endpoint or DEFAULT_ENDPOINT))


def no_retry() -> Any:
    """A pycarlo Backoff that never retries: the engine's retryPolicy decides."""
    from pycarlo.common.retries import Backoff

    class NoRetry(Backoff):
        def backoff(self, attempt: int) -> float:
            return 0.0

        def delays(self):  # type: ignore[override]
            return iter(())

    return NoRetry(0, 0)


def ask(client: Any, query: Any, **kwargs: Any) -> Any:
    """``client(query, **kwargs)``; an answer without ``data`` or ``errors`` (not JSON, empty,
    ``{"data": null}``: a proxy's page, a truncated body) is a retryable malformed_response,
    not sgqlc's bare ValueError."""
    from sgqlc.operation import GraphQLErrors  # pycarlo's GraphQL layer

    headers = trace_headers(kwargs.get("additional_headers"))  # the current span's traceparent, when tracing
    if headers:
        kwargs["additional_headers"] = headers
    try:
        return client(query, **kwargs)
    except GraphQLErrors as exc:  # pycarlo passed on an answer sgqlc could not read (not JSON)
        raise RetryableError(f"Monte Carlo's answer could not be read: {str(exc)[:200]}",
                             code="malformed_response") from None
    except ValueError as exc:
        if str(exc) != "no data and no errors":
            raise
        raise RetryableError("Monte Carlo answered without data or errors (a malformed response)",
                             code="malformed_response") from None


def graphql_errors(body: Any) -> list[dict]:
    if isinstance(body, dict):
        body = [body]
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []


class MonteCarloVendor(Vendor):
    """pycarlo's exceptions.

    ===================================  ========  ===========================================
    exception                            retried?  code
    ===================================  ========  ===========================================
    GqlError (GraphQL errors, HTTP)      5xx, 429, the GraphQL error's extensions.code, else
                                         timeout   ``graphql_error`` (``http_<status>``)
    InvalidSessionError                  no        ``invalid_session``
    CircuitBreakerPipelineException      no        ``circuit_breaker_error``
    CircuitBreakerPollException          no        ``circuit_breaker_malformed``
    InvalidArtifactsException            no        ``invalid_dbt_artifacts``
    Multiple/ResourceNotFound (importer) no        ``resource_not_found``/``multiple_resources``
    requests ConnectionError, Timeout    yes       ``connection_error``
    requests HTTPError (artifact upload) 5xx, 429  ``upload_failed``
    ===================================  ========  ===========================================
    """

    name = "Monte Carlo (pycarlo)"
    modules = ("pycarlo",)
    extra = "montecarlo"

    def rules(self) -> list[Rule]:
        import requests
        from pycarlo.common.errors import GqlError, InvalidSessionError
        from pycarlo.features.circuit_breakers.exceptions import (
            CircuitBreakerPipelineException, CircuitBreakerPollException)
        from pycarlo.features.dbt.dbt_importer import InvalidArtifactsException
        from pycarlo.features.user import exceptions as user_errors

        def gql_code(fault: Fault, exc: Any) -> str:
            if fault.code:
                return fault.code
            status = getattr(exc, "status_code", 0)
            return f"http_{status}" if status and status != 200 else "graphql_error"

        def gql_retry(fault: Fault, exc: Any) -> bool:
            return bool(getattr(exc, "retryable", False)) or getattr(exc, "status_code", 0) == 429

        def http_retry(fault: Fault, exc: Any) -> bool:
            return fault.status is not None and (fault.status >= 500 or fault.status == 429)

        return [
            Rule((GqlError,), gql_code, retryable=gql_retry),
            Rule((InvalidSessionError,), "invalid_session"),
            Rule((CircuitBreakerPipelineException,), "circuit_breaker_error"),
            Rule((CircuitBreakerPollException,), "circuit_breaker_malformed"),
            Rule((InvalidArtifactsException,), "invalid_dbt_artifacts"),
            Rule((user_errors.ResourceNotFoundException,), "resource_not_found"),
            Rule((user_errors.MultipleResourcesFoundException,), "multiple_resources"),
            Rule((requests.ConnectionError, requests.Timeout), "connection_error", retryable=True),
            Rule((requests.HTTPError,), "upload_failed", retryable=http_retry),
        ]

    def describe(self, exc: BaseException) -> Fault:
        from pycarlo.common.errors import GqlError

        if isinstance(exc, GqlError):
            errors = graphql_errors(exc.body)
            codes = [(e.get("extensions") or {}).get("code") or e.get("code") for e in errors]
            code = next((c for c in codes if isinstance(c, str)), None)
            details = {"status": exc.status_code or None, "code": code,
                       "errors": [{k: e.get(k) for k in ("message", "path", "extensions") if k in e}
                                  for e in errors][:20] or None}
            return Fault(message=exc.message or exc.summary or "GraphQL request failed", code=code,
                         status=exc.status_code or None, headers=exc.headers, details=details)
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        return Fault(message=str(exc) or type(exc).__name__, status=status,
                     headers=getattr(response, "headers", None),
                     details={"status": status} if status else {})


MONTECARLO = MonteCarloVendor()
CONNECTION = ConnectionSpec(
    kind="montecarlo",
    description="Monte Carlo's GraphQL API with an API key (id + token, sent as x-mcd-id / "
                "x-mcd-token). `endpoint` overrides https://api.getmontecarlo.com/graphql "
                "(tests, proxies).",
    settings=SETTINGS,
    client=build_client,
    vendor=MONTECARLO,
    example={"kind": "montecarlo",
             "secrets": {"api_key_id": "MCD_API_ID", "api_token": "MCD_API_TOKEN"}},
)


async def call(context: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(client, *args, **kwargs)`` in a worker thread, pycarlo errors mapped."""
    client = await MONTECARLO.client(context)
    return await MONTECARLO.call(context, fn, client, *args, **kwargs)


def plain(value: Any) -> Any:
    """A Box / BoxList (pycarlo's answers) as plain JSON-able data."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_list"):
        return value.to_list()
    return value
