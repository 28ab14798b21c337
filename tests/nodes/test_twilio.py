"""twilio.* nodes and `auth: {type: twilio}`: the real `twilio` SDK talks to a local server
that answers like api.twilio.com; every flow runs through engine.run_file."""
from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from jsonschema import Draft202012Validator
from twilio.request_validator import RequestValidator

import engine
import nodes.twilio as twilio_nodes
from engine.registry import default_registry
from engine.schema import flow_schema
from engine.plugin import AuthError, Connection, InboundRequest
from tests.support.logs import retry_waits

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-for-tests"
MESSAGES = rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json"
CALLS = rf"/2010-04-01/Accounts/{ACCOUNT}/Calls\.json"
FAST_RETRY = {"type": "fixed", "count": 2, "interval": "PT0.01S"}


def message(**fields) -> dict:
    """A Message resource as Twilio's API returns it."""
    sid = fields.pop("sid", "SM" + "1" * 32)
    return {
        "account_sid": ACCOUNT, "api_version": "2010-04-01", "body": "Your order shipped.",
        "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
        "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api",
        "error_code": None, "error_message": None, "from": "+15017122661",
        "messaging_service_sid": None, "num_media": "0", "num_segments": "1", "price": None,
        "price_unit": "USD", "sid": sid, "status": "queued", "to": "+15551234567",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media.json"},
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json", **fields}


def call_resource(**fields) -> dict:
    """A Call resource as Twilio's API returns it."""
    sid = fields.pop("sid", "CA" + "2" * 32)
    return {
        "account_sid": ACCOUNT, "annotation": None, "answered_by": None,
        "api_version": "2010-04-01", "caller_name": None,
        "date_created": "Tue, 31 Aug 2010 20:36:28 +0000", "date_updated": None,
        "direction": "outbound-api", "duration": None, "end_time": None,
        "forwarded_from": None, "from": "+15017122661", "from_formatted": "(501) 712-2661",
        "group_sid": None, "parent_call_sid": None, "phone_number_sid": None, "price": None,
        "price_unit": "USD", "queue_time": "0", "sid": sid, "start_time": None,
        "status": "queued", "to": "+15551234567", "to_formatted": "(555) 123-4567",
        "trunk_sid": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json", **fields}


def twilio_error(code: int, text: str, status: int) -> dict:
    """Twilio's error body."""
    return {"code": code, "message": text, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


@pytest.fixture
def connections(tmp_path, recorder, monkeypatch):
    """connections.yaml with a `twilio` connection pointed at the recorder."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    path = tmp_path / "connections.yaml"
    path.write_text(f"""\
connections:
  twilio:
    kind: twilio
    endpoint: {recorder.url}
    settings: {{account_sid: {ACCOUNT}}}
    secrets: {{auth_token: TWILIO_AUTH_TOKEN}}
""")
    return path


def run_action(tmp_path: Path, connections: Path, action: dict, input=None):
    """Run a flow whose only action is `action`, named `send`."""
    flow = {"triggers": {"manual": {"type": "Manual"}},
            "actions": {"send": {"connection": "twilio", **action}}}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return engine.run_file(path, input=input, state=tmp_path / "state.db",
                           connections=connections)


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the module ----------------------------------------------------------------------------

def test_importing_the_module_does_not_import_the_sdk():
    code = "import nodes.twilio, sys; assert 'twilio' not in sys.modules, 'twilio imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr


def test_module_declares_connection_nodes_and_auth():
    assert [c.kind for c in twilio_nodes.CONNECTIONS] == ["twilio"]
    assert sorted(n.type for n in twilio_nodes.NODES) == [
        "twilio.GetCall", "twilio.GetMessage", "twilio.SendSms", "twilio.SendWhatsApp",
        "twilio.StartCall"]
    assert [a.kind for a in twilio_nodes.AUTH] == ["twilio"]
    assert twilio_nodes.CONNECTIONS[0].secret_names == ["auth_token", "api_secret",
                                                         "webhook_key"]



@pytest.mark.parametrize("node", twilio_nodes.NODES, ids=lambda n: n.type)
def test_each_example_is_a_valid_action(node):
    validator = Draft202012Validator(flow_schema(default_registry()))
    errors = [e.message for e in validator.iter_errors({"actions": {"example": node.example}})]
    assert errors == []
    assert node.example["type"] == node.type and node.example["connection"] == node.connection


# -- phone numbers stay strings ------------------------------------------------------------

def test_phone_number_from_the_trigger_is_sent_exactly(tmp_path, recorder, connections):
    recorder.route("POST", MESSAGES, status=201, json=message())
    (tmp_path / "flow.yaml").write_text("""\
triggers:
  sms_reply:
    type: Request
    auth: {type: twilio, connection: twilio}
actions:
  send:
    type: twilio.SendSms
    connection: twilio
    inputs:
      to: "{{ triggerBody().phone }}"
      from: "+15017122661"
      body: "Your order shipped."
""")
    result = engine.run_file(tmp_path / "flow.yaml", input={"phone": "+15551234567"},
                             state=tmp_path / "state.db", connections=connections)

    assert result.status == "Succeeded"
    sent = recorder.requests[0]
    assert b"To=%2B15551234567" in sent.body
    assert sent.form()["To"] == ["+15551234567"]
    assert result.steps["send"].inputs["to"] == "+15551234567"


def test_an_unquoted_phone_number_in_yaml_is_refused_when_the_flow_loads(tmp_path,
                                                                        connections):
    (tmp_path / "flow.yaml").write_text("""\
actions:
  send:
    type: twilio.SendSms
    connection: twilio
    inputs: {to: +15551234567, from: "+15017122661", body: hi}
""")
    with pytest.raises(engine.FlowError, match=r"actions\.send\.inputs\.to"):
        engine.run_file(tmp_path / "flow.yaml", state=tmp_path / "state.db",
                        connections=connections)


def test_a_number_typed_phone_from_the_trigger_fails_the_step_without_calling_twilio(
        tmp_path, recorder, connections):
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms",
        "inputs": {"to": "{{ triggerBody().phone }}", "from": "+15017122661", "body": "hi"}},
        input={"phone": 15551234567})

    assert result.steps["send"].status == "Failed"
    assert result.steps["send"].error["code"] == "InvalidInputs"
    assert recorder.requests == []


# -- twilio.SendSms ------------------------------------------------------------------------

def test_send_sms_posts_the_message_form_with_basic_auth(tmp_path, recorder, connections):
    recorder.route("POST", MESSAGES, status=201, json=message(num_media="2"))
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms",
        "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "Your order shipped.",
                   "mediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
                   "statusCallback": "https://example.com/hooks/status"}})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Succeeded", 1)
    sent = recorder.requests[0]
    assert sent.method == "POST"
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sent.header("Authorization") == basic_auth(ACCOUNT, TOKEN)
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    assert sent.form() == {
        "To": ["+15551234567"], "From": ["+15017122661"], "Body": ["Your order shipped."],
        "MediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
        "StatusCallback": ["https://example.com/hooks/status"]}
    assert step.outputs == message(num_media="2")
    assert step.outputs["price_unit"] == "USD" and step.outputs["error_code"] is None


def test_send_sms_through_a_messaging_service_schedules_without_from(tmp_path, recorder,
                                                                     connections):
    recorder.route("POST", MESSAGES, status=201,
                   json=message(status="scheduled", **{"from": None},
                                messaging_service_sid="MG" + "9" * 32))
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms",
        "inputs": {"to": "+15551234567", "messagingServiceSid": "MG" + "9" * 32,
                   "body": "Reminder", "sendAt": "2030-01-01T10:00:00Z",
                   "validityPeriod": 600}})

    assert result.steps["send"].outputs["status"] == "scheduled"
    assert recorder.requests[0].form() == {
        "To": ["+15551234567"], "MessagingServiceSid": ["MG" + "9" * 32],
        "Body": ["Reminder"], "SendAt": ["2030-01-01T10:00:00Z"], "ScheduleType": ["fixed"],
        "ValidityPeriod": ["600"]}


@pytest.mark.parametrize("inputs, complaint", [
    ({"to": "+15551234567", "body": "hi"}, "`from`"),
    ({"to": "+15551234567", "from": "+15017122661"}, "`body`"),
    ({"to": "+15551234567", "from": "+15017122661", "body": "hi",
      "sendAt": "2030-01-01T10:00:00Z"}, "`messagingServiceSid`"),
])
def test_send_sms_refuses_incomplete_inputs_before_calling_twilio(tmp_path, recorder,
                                                                  connections, inputs,
                                                                  complaint):
    result = run_action(tmp_path, connections, {"type": "twilio.SendSms", "inputs": inputs})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == "InvalidInputs"
    assert complaint in step.error["message"]
    assert recorder.requests == []


# -- twilio.SendWhatsApp -------------------------------------------------------------------

@pytest.mark.parametrize("to, sender", [
    ("+15551234567", "+14155238886"),
    ("whatsapp:+15551234567", "whatsapp:+14155238886"),
])
def test_whatsapp_addresses_get_the_channel_prefix_once(tmp_path, recorder, connections, to,
                                                        sender):
    recorder.route("POST", MESSAGES, status=201,
                   json=message(to="whatsapp:+15551234567", **{"from": "whatsapp:+14155238886"}))
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendWhatsApp", "inputs": {"to": to, "from": sender, "body": "Hello"}})

    assert result.steps["send"].status == "Succeeded"
    assert recorder.requests[0].form() == {"To": ["whatsapp:+15551234567"],
                                           "From": ["whatsapp:+14155238886"],
                                           "Body": ["Hello"]}


def test_whatsapp_template_sends_content_sid_and_variables_as_json(tmp_path, recorder,
                                                                   connections):
    recorder.route("POST", MESSAGES, status=201, json=message(to="whatsapp:+15551234567"))
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendWhatsApp",
        "inputs": {"to": "{{ triggerBody().phone }}", "from": "+14155238886",
                   "contentSid": "HX" + "b" * 32,
                   "contentVariables": {"1": "{{ triggerBody().name }}", "2": 3}}},
        input={"phone": "+15551234567", "name": "Ana"})

    assert result.steps["send"].status == "Succeeded"
    form = recorder.requests[0].form()
    assert form["To"] == ["whatsapp:+15551234567"]
    assert form["ContentSid"] == ["HX" + "b" * 32]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Ana", "2": "3"}
    assert "Body" not in form


def test_whatsapp_needs_a_template_or_a_body(tmp_path, recorder, connections):
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendWhatsApp", "inputs": {"to": "+15551234567", "from": "+14155238886"}})

    assert result.steps["send"].error["code"] == "InvalidInputs"
    assert "contentSid" in result.steps["send"].error["message"]
    assert recorder.requests == []


# -- twilio.StartCall ----------------------------------------------------------------------

def test_start_call_posts_twiml_and_status_callback_events(tmp_path, recorder, connections):
    recorder.route("POST", CALLS, status=201, json=call_resource())
    result = run_action(tmp_path, connections, {
        "type": "twilio.StartCall",
        "inputs": {"to": "+15551234567", "from": "+15017122661",
                   "twiml": "<Response><Say>Your code is 1 2 3</Say></Response>",
                   "statusCallback": "https://example.com/hooks/call",
                   "statusCallbackEvent": ["initiated", "answered", "completed"],
                   "timeout": 30, "record": True, "machineDetection": "Enable"}})

    step = result.steps["send"]
    assert step.status == "Succeeded"
    assert step.outputs == call_resource()
    sent = recorder.requests[0]
    assert (sent.method, sent.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json")
    assert sent.header("Authorization") == basic_auth(ACCOUNT, TOKEN)
    assert sent.form() == {
        "To": ["+15551234567"], "From": ["+15017122661"],
        "Twiml": ["<Response><Say>Your code is 1 2 3</Say></Response>"],
        "StatusCallback": ["https://example.com/hooks/call"],
        "StatusCallbackEvent": ["initiated", "answered", "completed"],
        "Timeout": ["30"], "Record": ["true"], "MachineDetection": ["Enable"]}


@pytest.mark.parametrize("instructions", [
    {},
    {"twiml": "<Response/>", "url": "https://example.com/voice.xml"},
])
def test_start_call_needs_exactly_one_of_twiml_url_or_application(tmp_path, recorder,
                                                                  connections, instructions):
    result = run_action(tmp_path, connections, {
        "type": "twilio.StartCall",
        "inputs": {"to": "+15551234567", "from": "+15017122661", **instructions}})

    assert result.steps["send"].error["code"] == "InvalidInputs"
    assert recorder.requests == []


# -- twilio.GetMessage / twilio.GetCall ----------------------------------------------------

@pytest.mark.parametrize("node, sid, collection, resource", [
    ("twilio.GetMessage", "SM" + "1" * 32, "Messages",
     message(status="delivered", price="-0.00790", date_sent="Thu, 24 Aug 2023 05:01:46 +0000")),
    ("twilio.GetMessage", "SM" + "1" * 32, "Messages",
     message(status="undelivered", error_code=30003, error_message="Unreachable destination handset")),
    ("twilio.GetCall", "CA" + "2" * 32, "Calls",
     call_resource(status="completed", duration="42", price="-0.01400")),
])
def test_get_fetches_the_resource_status(tmp_path, recorder, connections, node, sid,
                                         collection, resource):
    path = f"/2010-04-01/Accounts/{ACCOUNT}/{collection}/{sid}.json"
    recorder.route("GET", path, json=resource)
    result = run_action(tmp_path, connections, {"type": node, "inputs": {"sid": sid}})

    step = result.steps["send"]
    assert step.status == "Succeeded"
    assert step.outputs == resource
    sent = recorder.requests[0]
    assert (sent.method, sent.path, sent.body) == ("GET", path, b"")
    assert sent.header("Authorization") == basic_auth(ACCOUNT, TOKEN)


# -- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, code", [
    (400, twilio_error(21211, "Invalid 'To' Phone Number: +1555123456", 400), "21211"),
    (401, twilio_error(20003, "Authenticate", 401), "20003"),
    (403, twilio_error(21408, "Permission to send an SMS has not been enabled for the region "
                              "indicated by the 'To' number", 403), "21408"),
    (404, twilio_error(20404, "The requested resource was not found", 404), "20404"),
])
def test_client_errors_fail_at_once_with_twilios_code(tmp_path, recorder, connections,
                                                      status, body, code):
    recorder.route("POST", MESSAGES, status=status, json=body)
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms", "retryPolicy": FAST_RETRY,
        "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "hi"}})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 1)
    assert result.status == "Failed"
    assert step.error["code"] == code
    assert body["message"] in step.error["message"]
    assert step.error["details"] == {
        "status": status, "twilio_code": body["code"], "more_info": body["more_info"],
        "method": "POST", "uri": f"/Accounts/{ACCOUNT}/Messages.json"}
    assert TOKEN not in json.dumps(step.error)


@pytest.mark.parametrize("status, body, headers", [
    (429, twilio_error(20429, "Too Many Requests", 429), {"Retry-After": "0"}),
    (500, twilio_error(20500, "Internal Server Error", 500), {}),
    (503, {"code": 20503, "message": "Service Unavailable", "status": 503}, {}),
])
def test_rate_limits_and_server_errors_are_retried(tmp_path, recorder, connections, status,
                                                   body, headers):
    recorder.route("POST", MESSAGES, status=status, json=body, headers=headers, times=1)
    recorder.route("POST", MESSAGES, status=201, json=message())
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms", "retryPolicy": FAST_RETRY,
        "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "hi"}})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Succeeded", 2)
    assert step.outputs["sid"] == "SM" + "1" * 32
    assert [r.form()["To"] for r in recorder.requests] == [["+15551234567"]] * 2


def test_retry_after_sets_the_wait_before_the_next_attempt(tmp_path, recorder, connections, caplog):
    recorder.route("POST", MESSAGES, status=429, headers={"Retry-After": "1"}, times=1,
                   json=twilio_error(20429, "Too Many Requests", 429))
    recorder.route("POST", MESSAGES, status=201, json=message())
    with caplog.at_level(logging.INFO, logger="flowrun.run"):
        result = run_action(tmp_path, connections, {
            "type": "twilio.SendSms", "retryPolicy": FAST_RETRY,
            "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "hi"}})

    assert result.steps["send"].attempts == 2
    # Retry-After: 1 wins over the 0.01 s interval (the engine's decision, not a stopwatch)
    assert retry_waits(caplog) == [1.0]


def test_a_server_error_that_persists_fails_after_the_retries(tmp_path, recorder, connections):
    recorder.route("POST", MESSAGES, status=500,
                   json=twilio_error(20500, "Internal Server Error", 500))
    result = run_action(tmp_path, connections, {
        "type": "twilio.SendSms", "retryPolicy": FAST_RETRY,
        "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "hi"}})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "20500"
    assert step.error["details"]["status"] == 500
    assert len(recorder.requests) == 3


def test_an_unreachable_endpoint_is_a_retryable_connection_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    conns = tmp_path / "connections.yaml"
    conns.write_text(f"connections:\n  twilio:\n    kind: twilio\n"
                     f"    endpoint: http://127.0.0.1:9\n"
                     f"    settings: {{account_sid: {ACCOUNT}}}\n"
                     f"    secrets: {{auth_token: TWILIO_AUTH_TOKEN}}\n")
    result = run_action(tmp_path, conns, {
        "type": "twilio.GetCall", "retryPolicy": FAST_RETRY, "inputs": {"sid": "CA1"}})

    step = result.steps["send"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "connection_error"


# -- connection settings -------------------------------------------------------------------

def test_api_key_credentials_and_an_endpoint_with_a_path_prefix(tmp_path, recorder,
                                                                monkeypatch):
    monkeypatch.setenv("TWILIO_API_SECRET", "api-key-secret-for-tests")
    conns = tmp_path / "connections.yaml"
    conns.write_text(f"""\
connections:
  twilio:
    kind: twilio
    endpoint: {recorder.url}/twilio-proxy/
    settings: {{account_sid: {ACCOUNT}, api_key: SK0123456789, region: ie1, edge: dublin}}
    secrets: {{api_secret: TWILIO_API_SECRET}}
""")
    recorder.route("POST", "/twilio-proxy" + MESSAGES, status=201, json=message())
    result = run_action(tmp_path, conns, {
        "type": "twilio.SendSms",
        "inputs": {"to": "+15551234567", "from": "+15017122661", "body": "hi"}})

    assert result.steps["send"].status == "Succeeded"
    sent = recorder.requests[0]
    assert sent.path == f"/twilio-proxy/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sent.header("Authorization") == basic_auth("SK0123456789",
                                                      "api-key-secret-for-tests")


def test_a_connection_without_a_credential_fails_the_step(tmp_path, recorder):
    conns = tmp_path / "connections.yaml"
    conns.write_text(f"connections:\n  twilio:\n    kind: twilio\n    endpoint: {recorder.url}\n"
                     f"    settings: {{account_sid: {ACCOUNT}}}\n")
    result = run_action(tmp_path, conns, {
        "type": "twilio.GetCall", "inputs": {"sid": "CA1"}})

    assert result.steps["send"].status == "Failed"
    assert result.steps["send"].error["code"] == "MissingSetting"
    assert recorder.requests == []


# -- inbound webhooks: X-Twilio-Signature --------------------------------------------------

PUBLIC_URL = "https://hooks.example.com/flows/sms-reply?source=twilio"
INBOUND = {"AccountSid": ACCOUNT, "MessageSid": "SM" + "3" * 32, "From": "+15551234567",
           "To": "+15017122661", "Body": "STOP", "NumMedia": "0"}


def twilio_connection(**secrets) -> Connection:
    return Connection("twilio", twilio_nodes.CONNECTIONS[0], {"account_sid": ACCOUNT},
                      secrets if secrets else {"auth_token": TOKEN}, None)


def inbound(url=PUBLIC_URL, form=INBOUND, signature=None, signed_url=None, token=TOKEN,
            headers=None) -> InboundRequest:
    """A form-encoded webhook, signed by the SDK's RequestValidator unless told otherwise."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(signed_url or url, form)
    hdrs = {"content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature, **(headers or {})}
    return InboundRequest(method="POST", url=url, headers=hdrs,
                          body=urlencode(form).encode(),
                          form={k: [v] for k, v in form.items()})


def verify(request: InboundRequest, connection: Connection | None = None):
    auth = twilio_nodes.AUTH[0]()
    return auth.verify(request, connection or twilio_connection(), {})


def test_a_webhook_signed_with_the_auth_token_is_accepted():
    assert verify(inbound()) is None


class MultiDict(dict):
    """Repeated form values, in the shape RequestValidator reads them."""

    def getlist(self, name):
        return self[name]


def test_every_value_of_a_repeated_form_field_is_signed():
    form = {"MediaUrl0": ["https://example.com/a.png"], "Tags": ["x", "y"]}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL, MultiDict(form))
    request = InboundRequest(method="POST", url=PUBLIC_URL, body=urlencode(form, doseq=True)
                             .encode(), form=form,
                             headers={"x-twilio-signature": signature})
    assert verify(request) is None

    request.form = {"MediaUrl0": ["https://example.com/a.png"], "Tags": ["x"]}
    with pytest.raises(AuthError):
        verify(request)


def test_redelivery_is_deduplicated_on_twilios_idempotency_token():
    token = "c5f2c3d1-70a4-4b6f-8f57-4b0a3b3a1d5e"
    first = verify(inbound(headers={"i-twilio-idempotency-token": token}))
    again = verify(inbound(headers={"i-twilio-idempotency-token": token}))
    assert first == again == token


@pytest.mark.parametrize("request_, status, reason", [
    (inbound(token="someone-elses-token"), 403, "does not match"),
    (inbound(form={**INBOUND, "Body": "START"}, signature=RequestValidator(TOKEN)
             .compute_signature(PUBLIC_URL, INBOUND)), 403, "does not match"),
    (inbound(signed_url="https://hooks.example.com/flows/other"), 403, "does not match"),
    (inbound(signed_url=PUBLIC_URL.replace("https://", "http://")), 403, "does not match"),
    (inbound(signature=""), 401, "missing X-Twilio-Signature"),
], ids=["forged-with-another-token", "body-altered", "signed-for-another-url",
        "signed-for-http", "missing-header"])
def test_forged_altered_or_unsigned_webhooks_are_refused(request_, status, reason):
    with pytest.raises(AuthError) as refused:
        verify(request_)
    assert refused.value.status == status
    assert reason in refused.value.message
    assert TOKEN not in refused.value.message


def test_missing_signature_header_is_401():
    request = inbound()
    del request.headers["x-twilio-signature"]
    with pytest.raises(AuthError) as refused:
        verify(request)
    assert refused.value.status == 401


def test_the_port_may_be_present_or_absent_in_the_signed_url():
    """Twilio signs https URLs sometimes with :443 and sometimes without (SDK behaviour)."""
    signed = "https://hooks.example.com:443/flows/sms-reply?source=twilio"
    assert verify(inbound(signed_url=signed)) is None


def test_json_webhooks_are_verified_through_body_sha256():
    body = json.dumps({"event": "delivered", "sid": "SM1"})
    validator = RequestValidator(TOKEN)
    url = f"https://hooks.example.com/flows/events?bodySHA256={validator.compute_hash(body)}"
    request = InboundRequest(method="POST", url=url, body=body.encode(), form=None,
                             headers={"content-type": "application/json",
                                      "x-twilio-signature": validator.compute_signature(url, {})})
    assert verify(request) is None
    request.body = json.dumps({"event": "failed", "sid": "SM1"}).encode()
    with pytest.raises(AuthError):
        verify(request)


def test_shared_key_webhooks_use_the_algorithm_and_key_they_name():
    key = "shared-key-secret-for-tests"
    url = PUBLIC_URL
    signature = RequestValidator(key).compute_signature(url, INBOUND, "HMAC_SHA256")
    settings = {"x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,"
                                                          "algorithm=HMAC_SHA256"}
    conn = twilio_connection(auth_token=TOKEN, webhook_key=key)
    assert verify(inbound(signature=signature, headers=settings), conn) is None
    with pytest.raises(AuthError):
        verify(inbound(signature=signature), conn)  # same signature read as HMAC-SHA1


def test_a_connection_without_auth_token_cannot_verify():
    with pytest.raises(AuthError) as refused:
        verify(inbound(), twilio_connection(api_secret="x"))
    assert refused.value.status == 403
    assert "auth_token" in refused.value.message


def test_every_exception_class_of_the_twilio_sdk_and_its_transport_is_mapped_by_a_declared_row():
    import requests
    from twilio.base.exceptions import TwilioException

    from nodes.twilio.client import TWILIO
    from tests.support.sdk import exception_classes, unmapped

    classes = exception_classes(TwilioException) + exception_classes(requests.RequestException)
    assert len(classes) > 10
    assert unmapped(TWILIO, classes) == []


def test_a_traced_run_sends_the_attempt_spans_traceparent_to_twilio(tmp_path, recorder, connections):
    from tests.support.tracing import traceparent, traced

    recorder.route("POST", MESSAGES, status=201, json=message())
    with traced() as spans:
        result = run_action(tmp_path, connections, {"type": "twilio.SendSms", "inputs": {
            "to": "+15551234567", "from": "+15017122661", "body": "hi"}})
    assert result.status == "Succeeded"
    [send] = spans.named("send")
    assert recorder.requests[0].header("traceparent") == traceparent(send)
    assert recorder.requests[0].header("Authorization") == basic_auth(ACCOUNT, TOKEN)
