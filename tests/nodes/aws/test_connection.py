"""The `aws` connection: credentials (secrets, the default chain, an assumed role), the endpoint
override, and botocore errors mapped to retryable or terminal flowrun errors."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

import nodes.aws as aws_nodes
from engine.plugin import ActionError, Connection, RetryableError
from nodes.aws.client import AWS, CONNECTION, build_client

from .conftest import SECRET, action


def connection(moto, settings: dict | None = None, secrets: dict | None = None, endpoint: str | None = None):
    return Connection("aws", CONNECTION, {"region": "us-east-1", **(settings or {})},
                      {"access_key_id": "AKIAFLOWRUNTEST00001", "secret_access_key": SECRET, **(secrets or {})},
                      endpoint if endpoint is not None else moto.url)


def test_importing_the_module_does_not_import_boto3():
    code = "import engine, nodes.aws, sys; assert not {'boto3', 'botocore'} & set(sys.modules), 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_module_declares_its_connection_nodes_and_triggers():
    assert [c.kind for c in aws_nodes.CONNECTIONS] == ["aws"]
    assert set(CONNECTION.secret_names) == {"access_key_id", "secret_access_key", "session_token", "external_id"}
    assert {n.type for n in aws_nodes.NODES} == {"aws.eventbridge.PutEvents", "aws.sqs.SendMessage",
                                                 "aws.sns.Publish", "aws.kinesis.PutRecords"}
    assert {t.type for t in aws_nodes.TRIGGERS} == {"aws.sqs.Queue", "aws.kinesis.Stream"}
    assert all(t.connection == "aws" and t.mode == "pull" for t in aws_nodes.TRIGGERS)


def test_every_node_example_is_a_valid_action_of_the_flow_schema():
    from jsonschema import Draft202012Validator

    from engine.registry import default_registry
    from engine.schema import flow_schema

    validator = Draft202012Validator(flow_schema(default_registry()))
    for node in aws_nodes.NODES:
        errors = list(validator.iter_errors({"actions": {"example": node.example}}))
        assert errors == [], (node.type, [e.message for e in errors])


def test_keys_from_the_connection_secrets_sign_the_requests(moto):
    clients = build_client(connection(moto))
    identity = clients("sts").get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:")
    creds = clients.session.get_credentials().get_frozen_credentials()
    assert (creds.access_key, creds.secret_key) == ("AKIAFLOWRUNTEST00001", SECRET)


def test_without_keys_the_default_boto3_chain_is_used(moto, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    conn = Connection("aws", CONNECTION, {"region": "us-east-1"}, {}, moto.url)
    creds = build_client(conn).session.get_credentials().get_frozen_credentials()
    assert creds.access_key == "AKIAFROMENVIRONMENT1"


def test_an_assumed_role_signs_with_the_temporary_credentials_sts_gave(moto):
    role = "arn:aws:iam::123456789012:role/flows"
    clients = build_client(connection(moto, {"role_arn": role, "role_session_name": "nightly"},
                                      {"external_id": "ext-1"}))
    identity = clients("sts").get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/flows/nightly"
    creds = clients.session.get_credentials().get_frozen_credentials()
    assert creds.access_key != "AKIAFLOWRUNTEST00001" and creds.token


def test_no_region_anywhere_is_a_clear_error(moto, monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    conn = Connection("aws", CONNECTION, {}, {"access_key_id": "A", "secret_access_key": "B"}, moto.url)
    with pytest.raises(ActionError, match="connection 'aws' has no region"):
        build_client(conn)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_endpoint_is_retryable_and_the_engine_retries_it(aws_run):
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": "http://127.0.0.1/q", "message": {"body": "x"}},
                                  retryPolicy={"type": "fixed", "count": 2, "interval": "PT0.01S"})},
                  endpoint=closed_port())
    step = run.steps["send"]
    assert run.status == "Failed" and step.attempts == 3
    assert step.error["code"] == "ConnectionError"


ERRORS = [
    # (status, AWS code, retryable?)
    (400, "ThrottlingException", True),
    (400, "Throttling", True),
    (400, "ProvisionedThroughputExceededException", True),
    (500, "InternalFailure", True),
    (503, "ServiceUnavailable", True),
    (400, "AccessDeniedException", False),
    (400, "ValidationException", False),
    (404, "ResourceNotFoundException", False),
    (403, "UnrecognizedClientException", False),
]


@pytest.mark.parametrize("status,code,retryable", ERRORS)
def test_botocore_client_errors_map_to_retryable_or_terminal_by_code_and_status(status, code, retryable):
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": code, "Message": f"no: {SECRET}"},
                       "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r-1", "HTTPHeaders": {}}},
                      "PutEvents")
    mapped = AWS.map_error(exc, [SECRET])
    assert isinstance(mapped, RetryableError) is retryable
    assert mapped.code == code and mapped.details == {"status": status, "code": code, "request_id": "r-1"}
    assert SECRET not in str(mapped) and json.dumps(SECRET)[1:-1] not in str(mapped)


@pytest.mark.parametrize("name,code,retryable", [
    ("EndpointConnectionError", "ConnectionError", True), ("ConnectTimeoutError", "Timeout", True),
    ("ReadTimeoutError", "Timeout", True), ("NoCredentialsError", "NoCredentials", False),
    ("NoRegionError", "NoRegion", False)])
def test_botocore_transport_and_configuration_errors_map_too(name, code, retryable):
    from botocore import exceptions

    cls = getattr(exceptions, name)
    exc = cls(endpoint_url="http://x", error="e") if "Endpoint" in name or "Timeout" in name else cls()
    mapped = AWS.map_error(exc)
    assert mapped.code == code and isinstance(mapped, RetryableError) is retryable


def test_a_bad_secret_never_shows_in_the_run_the_store_or_the_logs(moto, aws_run, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    run = aws_run({"send": action("aws.sqs.SendMessage", {"queue": "missing", "message": {"body": "x"}})})
    assert run.status == "Failed"
    db = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))  # the file and its WAL
    from engine.vendor import secret_forms

    for form in secret_forms(SECRET):
        assert form not in json.dumps(run.to_json(), ensure_ascii=False)
        assert form.encode() not in db
        assert form not in caplog.text
