"""The ``aws`` connection: region, credentials, assume-role, the endpoint override, and the
one place botocore errors are mapped.

    connections:
      aws:
        kind: aws
        settings: {region: eu-west-1, role_arn: "arn:aws:iam::123456789012:role/flows"}
        secrets: {access_key_id: AWS_KEY_ID, secret_access_key: AWS_SECRET, external_id: AWS_EXT_ID}

Without ``access_key_id`` the default boto3 chain finds credentials (environment, shared
config, SSO, container or instance roles). With ``role_arn`` those credentials assume the
role (``sts:AssumeRole`` with the external id), refreshed before they expire.
``endpoint`` sends every service's calls to one address (moto, LocalStack, a VPC endpoint).

The client (``AwsClients``) is built once per connection in a worker thread; it holds the
boto3 session and one botocore client per service. botocore's own retries are off
(``total_max_attempts: 1``): the engine's ``retryPolicy`` is the only loop that retries a
whole call, and the nodes retry only the entries of a partial failure (``retry_entries``).
"""
from __future__ import annotations

import json
import random
import threading
from typing import Any, Awaitable, Callable, Iterable, Sequence

import anyio

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "region": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$",
                   "description": "AWS region, e.g. eu-west-1. Default: the boto3 chain's (AWS_REGION, "
                                  "~/.aws/config)."},
        "access_key_id": secret("Access key id. Leave it out to use the default boto3 credential chain."),
        "secret_access_key": secret("Secret access key (with access_key_id)."),
        "session_token": secret("Session token of temporary credentials (with access_key_id)."),
        "role_arn": {"type": "string", "pattern": "^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/.+$",
                     "description": "Assume this role (sts:AssumeRole) with the credentials above."},
        "external_id": secret("External id the role's trust policy requires (with role_arn)."),
        "role_session_name": {"type": "string", "pattern": "^[\\w+=,.@-]{2,64}$", "default": "flowrun",
                              "description": "Session name of the assumed role (shows in CloudTrail)."},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 30,
                    "description": "Seconds to wait to connect and for one response (long polls add "
                                   "their wait time)."},
    },
    "dependentRequired": {"access_key_id": ["secret_access_key"], "secret_access_key": ["access_key_id"],
                          "session_token": ["access_key_id"], "external_id": ["role_arn"]},
}

# Per-entry error codes of PutEvents / PutRecords / SendMessageBatch worth sending again.
RETRYABLE_CODES = frozenset({
    "InternalFailure", "InternalException", "InternalError", "ServiceUnavailable", "ThrottlingException",
    "Throttling", "ProvisionedThroughputExceededException", "KMSThrottlingException", "RequestThrottled",
    "TooManyRequestsException", "LimitExceededException", "RequestLimitExceeded", "SlowDown",
    "TransactionInProgressException", "PriorRequestNotComplete", "EC2ThrottledException",
})


class AwsClients:
    """One boto3 session and one botocore client per service, for one connection."""

    def __init__(self, session: Any, endpoint: str | None, timeout: float):
        self.session = session
        self.endpoint = endpoint
        self.timeout = timeout
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # a boto3 session is not thread-safe; its clients are

    def __call__(self, service: str, *, read_timeout: float | None = None) -> Any:
        key = f"{service}:{read_timeout}"
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    from botocore.config import Config

                    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                    connect_timeout=self.timeout, read_timeout=read_timeout or self.timeout,
                                    max_pool_connections=32, user_agent_extra="flowrun")
                    client = self._clients[key] = self.session.client(service, endpoint_url=self.endpoint,
                                                                      config=config)
        return client


def build_client(conn: Connection) -> AwsClients:
    """The connection's session (static keys, or the default chain), assuming its role."""
    import boto3
    import botocore.session

    timeout = float(conn.get("timeout", 30))
    core = botocore.session.Session()
    core.set_config_variable("metadata_service_timeout", 1)
    key = conn.secret("access_key_id")
    if key:
        core.set_credentials(key, conn.secret("secret_access_key"), conn.secret("session_token") or None)
    region = conn.get("region")
    if region:
        core.set_config_variable("region", region)
    session = boto3.Session(botocore_session=core)
    if session.region_name is None:
        raise ActionError(f"connection '{conn.name}' has no region: set settings.region (or AWS_REGION)",
                          code="MissingSetting", details={"setting": "region"})
    role = conn.get("role_arn")
    if role:
        session = _assume(session, conn, role, timeout)
    return AwsClients(session, conn.endpoint, timeout)


def _assume(base: Any, conn: Connection, role: str, timeout: float) -> Any:
    """A session whose credentials come from sts:AssumeRole, refreshed before they expire."""
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials

    sts = base.client("sts", endpoint_url=conn.endpoint,
                      config=Config(retries={"total_max_attempts": 1}, connect_timeout=timeout,
                                    read_timeout=timeout))
    params = {"RoleArn": role, "RoleSessionName": conn.get("role_session_name", "flowrun")}
    if conn.secret("external_id"):
        params["ExternalId"] = conn.secret("external_id")

    def refresh() -> dict:
        with AWS.mapped(conn):
            creds = sts.assume_role(**params)["Credentials"]
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    core = botocore.session.Session()
    core._credentials = DeferredRefreshableCredentials(refresh, "assume-role")
    core.set_config_variable("region", base.region_name)
    core.set_config_variable("metadata_service_timeout", 1)
    return boto3.Session(botocore_session=core)


class AwsVendor(Vendor):
    """boto3/botocore: what it needs, and how its exceptions map.

    ====================================================  ==========  ===========================
    SDK exception                                         retried?    code
    ====================================================  ==========  ===========================
    ClientError, throttling codes (Throttling, ...)       yes         AWS's code
    ClientError, HTTP 5xx (InternalFailure, ...)          yes         AWS's code
    ClientError, anything else (4xx: AccessDenied, ...)   no          AWS's code
    EndpointConnectionError, ConnectionClosedError,       yes         ``ConnectionError``
    ConnectTimeoutError, ReadTimeoutError                 yes         ``Timeout``
    NoCredentialsError, PartialCredentialsError, ...      no          ``NoCredentials``
    ParamValidationError                                  no          ``InvalidParameter``
    NoRegionError                                         no          ``NoRegion``
    BotoCoreError (anything else)                         no          ``BotoCoreError``
    ====================================================  ==========  ===========================

    ``details`` holds status, code and request_id.
    """

    name = "AWS"
    modules = ("boto3", "botocore")
    extra = "aws"

    def rules(self) -> list[Rule]:
        from botocore import exceptions as e

        return [
            Rule((e.ClientError,), lambda fault, exc: fault.code or "ClientError", retryable=_client_retryable),
            Rule((e.EndpointConnectionError, e.ConnectionClosedError, e.ProxyConnectionError),
                 "ConnectionError", retryable=True),
            Rule((e.ConnectTimeoutError, e.ReadTimeoutError), "Timeout", retryable=True),
            Rule((e.NoCredentialsError, e.PartialCredentialsError, e.CredentialRetrievalError),
                 "NoCredentials"),
            Rule((e.ParamValidationError,), "InvalidParameter"),
            Rule((e.NoRegionError,), "NoRegion"),
            Rule((e.BotoCoreError,), "BotoCoreError", fallback=True),
        ]

    def describe(self, exc: Any) -> Fault:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            meta = response.get("ResponseMetadata") or {}
            status = meta.get("HTTPStatusCode")
            code = error.get("Code")
            return Fault(message=error.get("Message") or str(exc), code=code, status=status,
                         headers=meta.get("HTTPHeaders"),
                         details={"status": status, "code": code, "request_id": meta.get("RequestId")})
        return Fault(message=str(exc) or type(exc).__name__)


def _client_retryable(fault: Fault, exc: Any) -> bool:
    code = fault.code or ""
    return code in RETRYABLE_CODES or "Throttl" in code or (isinstance(fault.status, int) and fault.status >= 500)


AWS = AwsVendor()
CONNECTION = ConnectionSpec(
    kind="aws",
    description="Amazon Web Services (boto3): EventBridge, SQS, SNS, Kinesis. Credentials from secrets, "
                "or the default boto3 chain; optionally an assumed role. `endpoint` sends every call to one "
                "address (moto, LocalStack, a VPC endpoint).",
    settings=SETTINGS,
    client=build_client,
    vendor=AWS,
    example={"kind": "aws", "settings": {"region": "eu-west-1"},
             "secrets": {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}},
)


def to_json(value: Any, what: str) -> str:
    """Compact JSON of ``value`` (NaN and infinities are not JSON: a clear error)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"{what} is not JSON: {exc}", code="InvalidInput") from None


def body_text(value: Any, what: str) -> str:
    """A message body: a string as is, anything else as JSON."""
    return value if isinstance(value, str) else to_json(value, what)


def attributes(values: dict | None) -> dict:
    """SQS/SNS message attributes from {name: value}: strings, numbers (as Number), booleans
    (as String "true"/"false"), {"binary": base64} or an explicit {DataType, StringValue|BinaryValue}."""
    out = {}
    for name, value in (values or {}).items():
        if isinstance(value, dict) and "DataType" in value:
            out[name] = dict(value)
        elif isinstance(value, dict) and "binary" in value:
            import base64

            out[name] = {"DataType": "Binary", "BinaryValue": base64.b64decode(value["binary"], validate=True)}
        elif isinstance(value, bool):
            out[name] = {"DataType": "String", "StringValue": "true" if value else "false"}
        elif isinstance(value, (int, float)):
            out[name] = {"DataType": "Number", "StringValue": repr(value)}
        else:
            out[name] = {"DataType": "String", "StringValue": str(value)}
    return out


ATTRIBUTES = {"type": "object", "maxProperties": 10,
              "additionalProperties": {"oneOf": [
                  {"type": ["string", "number", "boolean"]},
                  {"type": "object", "required": ["binary"], "additionalProperties": False,
                   "properties": {"binary": {"type": "string", "contentEncoding": "base64"}}},
                  {"type": "object", "required": ["DataType"]}]},
              "description": "Message attributes: {name: value}; numbers are sent as Number, "
                             "{binary: <base64>} as Binary, or give {DataType, StringValue} yourself."}


async def call(context: Any, service: str, operation: str, **params: Any) -> Any:
    """``client(service).<operation>(**params)`` in a worker thread, errors mapped."""
    clients = await AWS.client(context)
    return await AWS.call(context, getattr(clients(service), operation), **params)


# -- batches and partial failures ------------------------------------------------------------

def batches(sizes: Sequence[int], *, max_count: int, max_bytes: int) -> list[list[int]]:
    """Indexes of items grouped into requests of at most ``max_count`` items and ``max_bytes``."""
    out: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if current and (len(current) >= max_count or total + size > max_bytes):
            out.append(current)
            current, total = [], 0
        current.append(i)
        total += size
    if current:
        out.append(current)
    return out


RETRY_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "description": "How the entries of a partial failure are sent again (throttling, internal errors): "
                   "up to `count` more times, after exponential backoff with full jitter.",
    "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 20, "default": 4},
        "delay": {"type": "number", "minimum": 0, "maximum": 60, "default": 0.1,
                  "description": "Seconds: the first backoff's ceiling (doubled each time)."},
        "maxDelay": {"type": "number", "minimum": 0, "maximum": 300, "default": 5},
    },
}


def backoff(attempt: int, policy: dict, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter: a uniform wait below min(maxDelay, delay * 2**attempt)."""
    ceiling = min(float(policy.get("maxDelay", 5)), float(policy.get("delay", 0.1)) * (2 ** attempt))
    return rng(0, ceiling) if ceiling > 0 else 0.0


async def retry_entries(send: Callable[[list[int]], Awaitable[dict[int, dict]]], indexes: Iterable[int],
                        policy: dict, retryable: Callable[[dict], bool]) -> tuple[dict[int, int], dict[int, dict]]:
    """Send ``indexes``; ``send`` returns {index: failure} for the entries that failed. Only the
    failed entries with a retryable failure are sent again, after a backoff, ``count`` times at most.
    Returns ({index: attempts}, {index: last failure}) for the entries that still failed."""
    pending = list(indexes)
    attempts = {i: 0 for i in pending}
    failed: dict[int, dict] = {}
    count = int(policy.get("count", 4))
    for attempt in range(count + 1):
        if attempt:
            await anyio.sleep(backoff(attempt - 1, policy))
        for i in pending:
            attempts[i] += 1
        result = await send(pending)
        for i in pending:
            failed.pop(i, None)
        failed.update(result)
        pending = [i for i in pending if i in result and retryable(result[i])]
        if not pending:
            break
    return attempts, failed


async def send_in_batches(action: str, send: Callable[[list[int]], Awaitable[dict[int, dict]]],
                          results: list[dict], sizes: Sequence[int], key: str, inputs: dict, *,
                          max_count: int, max_bytes: int, retryable: Callable[[dict], bool]) -> dict:
    """The whole batched call of PutEvents, SendMessageBatch or PutRecords: ``sizes`` split into
    requests, each sent with ``retry_entries``; every entry's ``attempts`` and, for the ones that
    still failed, ``errorCode``/``errorMessage`` (and any other field of the failure) in
    ``results``. Returns ``{key: results, "failedCount": n}``, or raises PartialFailure unless
    ``allowPartial``."""
    failed_all: dict[int, dict] = {}
    for group in batches(sizes, max_count=max_count, max_bytes=max_bytes):
        attempts, failed = await retry_entries(send, group, inputs.get("retry") or {}, retryable)
        for i in group:
            results[i]["attempts"] = attempts[i]
        failed_all.update(failed)
    for i, f in failed_all.items():
        results[i].update(errorCode=f["code"], errorMessage=f["message"],
                          **{k: v for k, v in f.items() if k not in ("code", "message")})
    outputs = {key: results, "failedCount": len(failed_all)}
    if failed_all and not inputs.get("allowPartial"):
        raise partial_error(action, failed_all, len(results), outputs)
    return outputs


def retryable_code(failure: dict) -> bool:
    code = str(failure.get("code") or "")
    return code in RETRYABLE_CODES or "Throttl" in code


def partial_error(action: str, failed: dict[int, dict], total: int, outputs: dict) -> ActionError:
    first = failed[min(failed)]
    return ActionError(f"{action}: {len(failed)} of {total} entries failed (entry {min(failed)}: "
                       f"{first.get('code')}: {first.get('message')}); set allowPartial: true to accept "
                       f"partial success", code="PartialFailure", details=outputs)


# -- what triggers receive ------------------------------------------------------------------

FORMAT = {"enum": ["json", "text", "base64"], "default": "json",
          "description": "How a message's data becomes `triggerBody()`: parsed as JSON (a message that is not "
                         "JSON is rejected), as UTF-8 text, or as base64 of the raw bytes."}


class BadMessage(ValueError):
    """A message the trigger cannot turn into a run (not JSON, too big): rejected, never run."""


def decode(data: bytes | str, fmt: str, max_bytes: int) -> Any:
    """A message's data as ``triggerBody()``, or BadMessage saying why not."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise BadMessage(f"{len(raw)} bytes is more than maxMessageBytes ({max_bytes})")
    if fmt == "base64":
        import base64

        return base64.b64encode(raw).decode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage("the data is not UTF-8 text") from None
    if fmt == "text":
        return text
    from engine.safejson import loads

    try:
        return loads(text)
    except ValueError as exc:  # JsonLimit is a ValueError
        raise BadMessage(f"the data is not JSON ({str(exc)[:200]})") from None


def describe_error(exc: BaseException, connection: Any = None) -> str:
    """One line for a log: a mapped botocore error's code and message, secrets scrubbed."""
    secrets = connection.secret_values() if connection is not None else ()
    mapped = AWS.map_error(exc, secrets) if AWS.table.rule_for(exc) is not None else None
    if mapped is not None:
        return f"{mapped.code}: {mapped}"
    return f"{type(exc).__name__}: {exc}"
