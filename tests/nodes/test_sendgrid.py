"""sendgrid.SendEmail: the real `sendgrid` SDK talks to a local server that answers like
api.sendgrid.com's v3 Mail Send; every flow runs through engine.run_file."""
from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

import engine
import nodes.sendgrid as sendgrid_nodes
from engine.registry import default_registry
from engine.schema import flow_schema
from tests.support.logs import retry_waits

API_KEY = "SG.test-key.for-the-recorder"
MAIL_SEND = "/v3/mail/send"
MESSAGE_ID = "W86EgYT6SQKk0lRflfLRsA"
FAST_RETRY = {"type": "fixed", "count": 2, "interval": "PT0.01S"}
PDF = base64.b64encode(b"%PDF-1.4 invoice 1042").decode()


def accepted(recorder, **kw) -> None:
    """SendGrid's answer to a good request: 202, empty body, X-Message-Id."""
    recorder.route("POST", MAIL_SEND, status=202, body=b"",
                   headers={"X-Message-Id": MESSAGE_ID}, **kw)


def sendgrid_errors(*errors: tuple) -> dict:
    """SendGrid's error body: {"errors": [{"message", "field", "help"}]}."""
    return {"errors": [{"message": m, "field": f, "help": h} for m, f, h in errors]}


@pytest.fixture
def connections(tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    path = tmp_path / "connections.yaml"
    path.write_text(f"""\
connections:
  sendgrid:
    kind: sendgrid
    endpoint: {recorder.url}
    secrets: {{api_key: SENDGRID_API_KEY}}
""")
    return path


def run_action(tmp_path: Path, connections: Path, action: dict, input=None):
    """Run a flow whose only action is `action`, named `send`."""
    flow = {"triggers": {"manual": {"type": "Manual"}},
            "actions": {"send": {"type": "sendgrid.SendEmail", "connection": "sendgrid",
                                 **action}}}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return engine.run_file(path, input=input, state=tmp_path / "state.db",
                           connections=connections)


def simple(**inputs) -> dict:
    return {"inputs": {"to": "ana@example.com", "from": "orders@acme.example",
                       "subject": "Order 1042", "text": "It shipped.", **inputs}}


# -- the module ----------------------------------------------------------------------------

def test_importing_the_module_does_not_import_the_sdk():
    code = ("import nodes.sendgrid, sys; "
            "assert 'sendgrid' not in sys.modules and 'python_http_client' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


def test_module_declares_the_connection_and_the_node():
    assert [c.kind for c in sendgrid_nodes.CONNECTIONS] == ["sendgrid"]
    assert sendgrid_nodes.CONNECTIONS[0].secret_names == ["api_key"]
    assert [n.type for n in sendgrid_nodes.NODES] == ["sendgrid.SendEmail"]



@pytest.mark.parametrize("node", sendgrid_nodes.NODES, ids=lambda n: n.type)
def test_each_example_is_a_valid_action(node):
    validator = Draft202012Validator(flow_schema(default_registry()))
    errors = [e.message for e in validator.iter_errors({"actions": {"example": node.example}})]
    assert errors == []
    assert node.example["type"] == node.type and node.example["connection"] == node.connection


# -- what is sent --------------------------------------------------------------------------

def test_every_input_lands_in_the_v3_mail_send_json(tmp_path, recorder, connections):
    accepted(recorder)
    result = run_action(tmp_path, connections, {"inputs": {
        "to": ["ana@example.com", "Bo Chen <bo@example.com>",
               {"email": "cy@example.com", "name": "Cy"}],
        "cc": ["manager@acme.example"],
        "bcc": {"email": "archive@acme.example"},
        "from": {"email": "orders@acme.example", "name": "Acme Orders"},
        "replyTo": "Support <support@acme.example>",
        "subject": "Order {{ triggerBody().order }} shipped",
        "text": "Order {{ triggerBody().order }} is on its way.",
        "html": "<p>Order <b>{{ triggerBody().order }}</b> is on its way.</p>",
        "attachments": [{"content": PDF, "filename": "invoice.pdf", "type": "application/pdf"},
                        {"content": "iVBORw0KGgo=", "filename": "logo.png",
                         "type": "image/png", "disposition": "inline", "contentId": "logo"}],
        "categories": ["shipping", "transactional"],
        "customArgs": {"order_id": "{{ triggerBody().order }}", "attempt": 1},
        "headers": {"X-Order-Id": "1042"},
        "sendAt": 1893456000,
        "asmGroupId": 42, "asmGroupsToDisplay": [42, 43],
    }}, input={"order": "1042"})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Succeeded", 1)
    assert step.outputs == {"statusCode": 202, "messageId": MESSAGE_ID}
    sent = recorder.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v3/mail/send")
    assert sent.header("Authorization") == f"Bearer {API_KEY}"
    assert sent.header("Content-Type") == "application/json"
    assert sent.json() == {
        "personalizations": [{
            "to": [{"email": "ana@example.com"}, {"email": "bo@example.com", "name": "Bo Chen"},
                   {"email": "cy@example.com", "name": "Cy"}],
            "cc": [{"email": "manager@acme.example"}],
            "bcc": [{"email": "archive@acme.example"}],
        }],
        "from": {"email": "orders@acme.example", "name": "Acme Orders"},
        "reply_to": {"email": "support@acme.example", "name": "Support"},
        "subject": "Order 1042 shipped",
        "content": [{"type": "text/plain", "value": "Order 1042 is on its way."},
                    {"type": "text/html",
                     "value": "<p>Order <b>1042</b> is on its way.</p>"}],
        "attachments": [
            {"content": PDF, "filename": "invoice.pdf", "type": "application/pdf"},
            {"content": "iVBORw0KGgo=", "filename": "logo.png", "type": "image/png",
             "disposition": "inline", "content_id": "logo"}],
        "categories": ["shipping", "transactional"],
        "custom_args": {"order_id": "1042", "attempt": "1"},
        "headers": {"X-Order-Id": "1042"},
        "send_at": 1893456000,
        "asm": {"group_id": 42, "groups_to_display": [42, 43]},
    }


def test_a_dynamic_template_gets_its_data_in_the_personalization(tmp_path, recorder,
                                                                 connections):
    accepted(recorder)
    order = {"id": 1042, "items": [{"sku": "A-1", "qty": 2}], "paid": True}
    result = run_action(tmp_path, connections, {"inputs": {
        "to": "{{ triggerBody().email }}",
        "from": "Acme <orders@acme.example>",
        "templateId": "d-13b8f94fbcae4ec6b75270d6cb59f932",
        "dynamicTemplateData": {"order": "{{ triggerBody().order }}",
                                "name": "{{ triggerBody().name }}"},
    }}, input={"email": "ana@example.com", "name": "Ana", "order": order})

    assert result.steps["send"].status == "Succeeded"
    assert recorder.requests[0].json() == {
        "personalizations": [{"to": [{"email": "ana@example.com"}],
                              "dynamic_template_data": {"order": order, "name": "Ana"}}],
        "from": {"email": "orders@acme.example", "name": "Acme"},
        "template_id": "d-13b8f94fbcae4ec6b75270d6cb59f932",
    }


def test_sandbox_mode_and_subuser(tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    conns = tmp_path / "connections.yaml"
    conns.write_text(f"connections:\n  sendgrid:\n    kind: sendgrid\n"
                     f"    endpoint: {recorder.url}\n"
                     f"    settings: {{on_behalf_of: shop-eu}}\n"
                     f"    secrets: {{api_key: SENDGRID_API_KEY}}\n")
    recorder.route("POST", MAIL_SEND, status=200, body=b"")  # sandbox mode answers 200
    result = run_action(tmp_path, conns, simple(sandboxMode=True))

    assert result.steps["send"].outputs == {"statusCode": 200, "messageId": None}
    sent = recorder.requests[0]
    assert sent.header("On-Behalf-Of") == "shop-eu"
    assert sent.json()["mail_settings"] == {"sandbox_mode": {"enable": True}}


@pytest.mark.parametrize("inputs, complaint", [
    ({"text": None}, "give `text` and/or `html`, or a `templateId`"),
    ({"subject": None}, "give a `subject`"),
    ({"to": ["ana@example.com", "not-an-address"]}, "`to[1]`: 'not-an-address'"),
    ({"from": "Acme <>"}, "`from`"),
    ({"attachments": [{"content": "%%% not base64", "filename": "a.pdf"}]},
     "`attachments[0].content` (a.pdf) is not Base64"),
    ({"dynamicTemplateData": {"a": 1}}, "`dynamicTemplateData` needs `templateId`"),
])
def test_incomplete_or_invalid_inputs_fail_before_calling_sendgrid(tmp_path, recorder,
                                                                   connections, inputs,
                                                                   complaint):
    action = simple()
    action["inputs"].update(inputs)
    action["inputs"] = {k: v for k, v in action["inputs"].items() if v is not None}
    result = run_action(tmp_path, connections, action)

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "InvalidInputs"
    assert complaint in step.error["message"]
    assert recorder.requests == []


# -- errors --------------------------------------------------------------------------------

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


@pytest.mark.parametrize("status, body, code, message", [
    (400, sendgrid_errors(("The from email does not contain a valid address.", "from.email",
                           f"{HELP}#message.from"),
                          ("Invalid type. Expected: integer, given: string.", "send_at",
                           f"{HELP}#message.send_at")),
     "bad_request",
     "SendGrid rejected the request (HTTP 400): from.email: The from email does not contain "
     "a valid address.; send_at: Invalid type. Expected: integer, given: string."),
    (401, sendgrid_errors(("The provided authorization grant is invalid, expired, or revoked",
                           None, None)),
     "unauthorized",
     "SendGrid rejected the request (HTTP 401): The provided authorization grant is invalid, "
     "expired, or revoked"),
    (403, sendgrid_errors(("The from address does not match a verified Sender Identity.",
                           "from", None)),
     "forbidden",
     "SendGrid rejected the request (HTTP 403): from: The from address does not match a "
     "verified Sender Identity."),
    (413, sendgrid_errors(("The JSON payload you have included in your request is too large.",
                           None, None)),
     "payload_too_large",
     "SendGrid rejected the request (HTTP 413): The JSON payload you have included in your "
     "request is too large."),
])
def test_client_errors_fail_at_once_naming_field_and_reason(tmp_path, recorder, connections,
                                                            status, body, code, message):
    recorder.route("POST", MAIL_SEND, status=status, json=body)
    result = run_action(tmp_path, connections, {**simple(), "retryPolicy": FAST_RETRY})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert result.status == "Failed"
    assert step.error == {"code": code, "message": message,
                          "details": {"status": status, "errors": body["errors"]}}
    assert API_KEY not in json.dumps(step.error)


@pytest.mark.parametrize("status, headers", [
    (429, {"Retry-After": "0", "X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}),
    (500, {}),
    (503, {}),
])
def test_rate_limits_and_server_errors_are_retried(tmp_path, recorder, connections, status,
                                                   headers):
    recorder.route("POST", MAIL_SEND, status=status, headers=headers, times=1,
                   json=sendgrid_errors(("too many requests" if status == 429
                                         else "internal error", None, None)))
    accepted(recorder)
    result = run_action(tmp_path, connections, {**simple(), "retryPolicy": FAST_RETRY})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Succeeded", 2)
    assert step.outputs == {"statusCode": 202, "messageId": MESSAGE_ID}
    assert recorder.requests[0].json() == recorder.requests[1].json()


def test_rate_limit_reset_sets_the_wait_when_there_is_no_retry_after(tmp_path, recorder,
                                                                     connections, caplog):
    reset = int(time.time()) + 2  # X-RateLimit-Reset: a Unix time, 1-2 s from now
    recorder.route("POST", MAIL_SEND, status=429, times=1,
                   headers={"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset": str(reset)},
                   json=sendgrid_errors(("too many requests", None, None)))
    recorder.route("POST", MAIL_SEND, status=202, headers={"X-Message-Id": MESSAGE_ID})
    with caplog.at_level(logging.INFO, logger="flowrun.run"):
        result = run_action(tmp_path, connections, {**simple(), "retryPolicy": FAST_RETRY})

    assert result.steps["send"].attempts == 2
    (wait,) = retry_waits(caplog)
    assert 0.01 < wait <= 2  # until the reset, not the 0.01 s interval


def test_a_server_error_that_persists_fails_after_the_retries(tmp_path, recorder, connections):
    recorder.route("POST", MAIL_SEND, status=500,
                   json=sendgrid_errors(("internal error", None, None)))
    result = run_action(tmp_path, connections, {**simple(), "retryPolicy": FAST_RETRY})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "server_error"
    assert step.error["message"] == "SendGrid rejected the request (HTTP 500): internal error"
    assert len(recorder.requests) == 3


def test_an_unreachable_endpoint_is_a_retryable_connection_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    conns = tmp_path / "connections.yaml"
    conns.write_text("connections:\n  sendgrid:\n    kind: sendgrid\n"
                     "    endpoint: http://127.0.0.1:9\n"
                     "    secrets: {api_key: SENDGRID_API_KEY}\n")
    result = run_action(tmp_path, conns, {**simple(), "retryPolicy": FAST_RETRY})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "connection_error"


def test_every_exception_class_of_the_sendgrid_sdk_and_its_transport_is_mapped_by_a_declared_row():
    from http.client import HTTPException
    from urllib.error import URLError

    from python_http_client.exceptions import HTTPError

    from nodes.sendgrid.client import SENDGRID
    from tests.support.sdk import exception_classes, unmapped

    classes = (exception_classes(HTTPError) + exception_classes(URLError)
               + exception_classes(HTTPException) + exception_classes(ConnectionError))
    assert len(exception_classes(HTTPError)) >= 11
    assert unmapped(SENDGRID, classes) == []
    for transport in (URLError, HTTPException, ConnectionError, TimeoutError):
        assert SENDGRID.table.rule_for(transport) is not None


# -- tracing -------------------------------------------------------------------------------

def test_a_traced_run_sends_the_attempt_spans_traceparent_to_sendgrid(tmp_path, recorder, connections):
    from tests.support.tracing import traceparent, traced

    accepted(recorder)
    with traced() as spans:
        result = run_action(tmp_path, connections, simple())
    assert result.status == "Succeeded"
    [send] = spans.named("send")
    assert recorder.requests[0].header("traceparent") == traceparent(send)
    assert recorder.requests[0].header("Authorization") == f"Bearer {API_KEY}"


def test_concurrent_sends_each_carry_their_own_attempts_traceparent_and_none_stays_on_the_client(
        tmp_path, recorder, connections):
    """python_http_client shares one headers dict between a client and every client derived from
    it: a traceparent merged into it would reach later sends, and concurrent ones would race."""
    from tests.support.tracing import traceparent, traced

    accepted(recorder)
    flow = {"triggers": {"manual": {"type": "Manual"}}, "actions": {"each": {
        "type": "Foreach", "foreach": "{{ range(12) | list }}", "concurrency": 12, "actions": {"send": {
            "type": "sendgrid.SendEmail", "connection": "sendgrid",
            "inputs": {"to": "user{{ item() }}@example.com", "from": "orders@acme.example",
                       "subject": "n", "text": "t"}}}}}}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    with traced() as spans:
        result = engine.run_file(path, state=tmp_path / "state.db", connections=connections)
        after = run_action(tmp_path, connections, simple())  # a send after them, in its own span
    assert result.status == "Succeeded" and after.status == "Succeeded"
    by_iteration = {s.attributes["flowrun.iteration"]: traceparent(s) for s in spans.named("send")
                    if "flowrun.iteration" in s.attributes}
    assert len(by_iteration) == 12 and len(set(by_iteration.values())) == 12
    loop_requests = recorder.requests[:12]
    for req in loop_requests:
        n = int(req.json()["personalizations"][0]["to"][0]["email"][4:-len("@example.com")])
        assert req.header("traceparent") == by_iteration[n]
        assert req.header("Authorization") == f"Bearer {API_KEY}"
    [last] = [s for s in spans.named("send") if "flowrun.iteration" not in s.attributes]
    assert recorder.requests[12].header("traceparent") == traceparent(last)


def test_a_send_without_tracing_carries_no_traceparent_and_leaves_the_clients_headers_alone(recorder):
    from engine import telemetry
    from nodes.sendgrid.client import build_client, request_client
    from nodes.sendgrid.mail import _send

    class Conn:
        name, endpoint = "sendgrid", recorder.url

        def get(self, key, default=None):
            return {"api_key": API_KEY}.get(key, default)

    accepted(recorder)
    client = build_client(Conn())
    before = dict(client.client.request_headers)
    _send(client, {"personalizations": []}, {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    _send(client, {"personalizations": []}, telemetry.headers())
    assert client.client.request_headers == before
    assert recorder.requests[0].header("traceparent") == "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert recorder.requests[1].header("traceparent") is None
    assert request_client(client).request_headers is not client.client.request_headers
