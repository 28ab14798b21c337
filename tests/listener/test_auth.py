"""Each authentication kind on a real server: valid, missing, forged, expired and replayed
credentials. Stripe and Twilio signatures come from their SDKs' own helpers."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

from .conftest import SECRETS
from .flows import TWILIO

KEY = SECRETS["TEST_INBOUND_KEY"]


def _count(server, flow: str) -> int:
    return len(server.runs(flow))


# -- shared key -----------------------------------------------------------------------------------
def test_key_in_a_header(server):
    body = {"orderId": "O-9", "qty": 1}
    before = _count(server, "orders")
    with server.client() as c:
        assert c.post("/flows/orders/triggers/new", json=body, headers={"X-API-Key": KEY}).status_code == 202
        missing = c.post("/flows/orders/triggers/new", json=body)
        wrong = c.post("/flows/orders/triggers/new", json=body, headers={"X-API-Key": KEY[:-1] + "x"})
    assert missing.status_code == 401 and missing.json()["error"] == "missing key (header X-API-Key)"
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong key (header X-API-Key)"
    assert _count(server, "orders") == before + 1


def test_key_in_a_query_parameter_is_redacted_before_the_flow_sees_it(server):
    with server.client() as c:
        ok = c.post(f"/flows/keyed_query/triggers/hook?code={KEY}&x=1", json={})
        assert c.post("/flows/keyed_query/triggers/hook?code=nope", json={}).status_code == 403
        assert c.post("/flows/keyed_query/triggers/hook", json={}).status_code == 401
    assert ok.status_code == 200
    assert ok.json() == {"code": "***", "x": "1"}
    stored = json.loads(server.run(ok.headers["x-flowrun-run-id"])["request"])
    assert KEY not in json.dumps(stored)
    assert stored["url"].endswith("?code=***&x=1") and stored["query"] == {"code": "***", "x": "1"}


# -- generic HMAC (GitHub style) ------------------------------------------------------------------
def _github(body: bytes, secret: str = SECRETS["TEST_HMAC_SECRET"]) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_hmac_valid_forged_tampered_missing_and_replayed(server):
    body = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": "d-1001", "X-Hub-Signature-256": _github(body)}
    before = _count(server, "github")
    with server.client() as c:
        first = c.post("/flows/github/triggers/push", content=body, headers=headers)
        replayed = c.post("/flows/github/triggers/push", content=body, headers=headers)
        forged = c.post("/flows/github/triggers/push", content=body,
                        headers=dict(headers, **{"X-Hub-Signature-256": _github(body, "not-the-secret")}))
        tampered = c.post("/flows/github/triggers/push", content=body.replace(b"main", b"evil"), headers=headers)
        missing = c.post("/flows/github/triggers/push", content=body, headers={"Content-Type": "application/json"})
    assert first.status_code == 202
    assert replayed.status_code == 202 and replayed.json()["runId"] == first.json()["runId"]
    assert forged.status_code == 403 and tampered.status_code == 403
    assert missing.status_code == 401
    assert _count(server, "github") == before + 1


def test_hmac_with_a_timestamp_refuses_expired_signatures(server):
    body = b'{"event": "ping"}'

    def signed(ts: int) -> dict:
        mac = hmac.new(SECRETS["TEST_HMAC_SECRET"].encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return {"X-Timestamp": str(ts), "X-Signature": f"v1={mac}", "Content-Type": "application/json"}

    now = int(time.time())
    with server.client() as c:
        fresh = c.post("/flows/github/triggers/signed", content=body, headers=signed(now))
        expired = c.post("/flows/github/triggers/signed", content=body, headers=signed(now - 120))
        shifted = c.post("/flows/github/triggers/signed", content=body,
                         headers=dict(signed(now - 120), **{"X-Timestamp": str(now)}))
    assert fresh.status_code == 202
    assert expired.status_code == 403 and "tolerance" in expired.json()["error"]
    assert shifted.status_code == 403  # a new timestamp on an old signature


# -- Stripe ---------------------------------------------------------------------------------------
def _stripe_event(event_id: str, type_: str = "payment_intent.succeeded") -> str:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "api_version": "2024-06-20",
                       "data": {"object": {"id": "pi_123", "object": "payment_intent", "amount": 1999}}})


def test_stripe_signatures(server):
    from stripe import WebhookSignature

    secret = SECRETS["TEST_STRIPE_WHSEC"]
    url = "/flows/stripe_events/triggers/webhook"
    payload = _stripe_event("evt_1001")
    valid = WebhookSignature.generate_signature_header(payload, secret)
    before = _count(server, "stripe_events")
    with server.client() as c:
        def post(body: str, header: str | None) -> object:
            headers = {"Content-Type": "application/json"}
            if header:
                headers["Stripe-Signature"] = header
            return c.post(url, content=body.encode(), headers=headers)

        first = post(payload, valid)
        replayed = post(payload, valid)
        resigned = post(payload, WebhookSignature.generate_signature_header(payload, secret, int(time.time()) - 1))
        forged = post(payload, WebhookSignature.generate_signature_header(payload, "whsec_attacker"))
        altered = post(payload.replace("1999", "1"), valid)
        expired = post(payload, WebhookSignature.generate_signature_header(payload, secret, int(time.time()) - 900))
        missing = post(payload, None)
        other_type = _stripe_event("evt_1002", "customer.created")
        ignored = post(other_type, WebhookSignature.generate_signature_header(other_type, secret))
    assert first.status_code == 202, first.text
    run_id = first.json()["runId"]
    assert replayed.json()["runId"] == run_id and resigned.json()["runId"] == run_id  # Stripe's event id
    assert forged.status_code == 403 and altered.status_code == 403
    assert expired.status_code == 403 and "Stripe signature rejected" in expired.json()["error"]
    assert missing.status_code == 401
    assert ignored.status_code == 202 and "x-flowrun-run-id" not in ignored.headers  # acknowledged, no run
    assert _count(server, "stripe_events") == before + 1
    assert server.wait_run(run_id)["status"] == "Succeeded"
    assert json.loads(server.run(run_id)["outputs"]) == {"event": {"event": "evt_1001", "type": "payment_intent.succeeded"}}
    stored = json.loads(server.run(run_id)["request"])
    assert stored["headers"]["stripe-signature"] == "***" and stored["body"] == payload


# -- Twilio ---------------------------------------------------------------------------------------
def _twilio_signature(url: str, params: dict) -> str:
    from twilio.request_validator import RequestValidator

    return RequestValidator(SECRETS["TEST_TWILIO_TOKEN"]).compute_signature(url, params)


def test_twilio_signature_over_url_and_form(server):
    path = "/flows/sms/triggers/inbound"
    params = {"From": "+15551234567", "To": "+15557654321", "Body": "hello", "MessageSid": "SM0001"}
    signature = _twilio_signature(server.url + path, params)
    before = _count(server, "sms")
    with server.client() as c:
        def post(form: dict, sig: str | None, **extra: str) -> object:
            headers = dict(extra)
            if sig:
                headers["X-Twilio-Signature"] = sig
            return c.post(path, data=form, headers=headers)

        ok = post(params, signature, **{"I-Twilio-Idempotency-Token": "tok-1"})
        replayed = post(params, signature, **{"I-Twilio-Idempotency-Token": "tok-1"})
        altered = post(dict(params, Body="pay me"), signature)
        other_url = post(params, _twilio_signature(server.url + path + "?x=1", params))
        missing = post(params, None)
    assert ok.status_code == 200, ok.text
    assert ok.headers["content-type"] == "text/xml"
    assert ok.text == "<Response><Message>Got hello from +15551234567</Message></Response>"
    assert replayed.status_code == 200 and replayed.text == ok.text
    assert replayed.headers["x-flowrun-run-id"] == ok.headers["x-flowrun-run-id"]
    assert replayed.headers["x-flowrun-duplicate"] == "true"
    assert altered.status_code == 403 and other_url.status_code == 403 and missing.status_code == 401
    assert _count(server, "sms") == before + 1


def test_twilio_behind_a_proxy_checks_the_public_base_url(make_server):
    base = "https://hooks.example.com/flowrun"
    server = make_server({"twilio.yaml": TWILIO}, "--base-url", base)
    path = "/flows/sms/triggers/inbound"
    params = {"From": "+15551234567", "Body": "via proxy"}
    with server.client() as c:
        public = c.post(path, data=params, headers={"X-Twilio-Signature": _twilio_signature(base + path, params)})
        local = c.post(path, data=params, headers={"X-Twilio-Signature": _twilio_signature(server.url + path, params)})
    assert public.status_code == 200, public.text
    assert "via proxy" in public.text
    assert local.status_code == 403


# -- Azure Event Grid -----------------------------------------------------------------------------
EG = f"/flows/blobs/triggers/events?code={SECRETS['TEST_EG_KEY']}"


def _eg_event(event_id: str, event_type: str = "Microsoft.Storage.BlobCreated", data: dict | None = None) -> dict:
    return {"id": event_id, "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a",
            "subject": "/blobServices/default/containers/c/blobs/b.txt", "eventType": event_type,
            "eventTime": "2026-11-01T10:00:00Z", "data": data or {"url": "https://a.blob.core.windows.net/c/b.txt"},
            "dataVersion": "1", "metadataVersion": "1"}


def test_eventgrid_subscription_validation_handshake(server):
    validation = [_eg_event("v-1", "Microsoft.EventGrid.SubscriptionValidationEvent",
                            {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                             "validationUrl": "https://rp-eastus2.eventgrid.azure.net/validate?id=1"})]
    headers = {"aeg-event-type": "SubscriptionValidation"}
    before = _count(server, "blobs")
    with server.client() as c:
        ok = c.post(EG, json=validation, headers=headers)
        no_key = c.post("/flows/blobs/triggers/events", json=validation, headers=headers)
        bad_key = c.post("/flows/blobs/triggers/events?code=guess", json=validation, headers=headers)
    assert ok.status_code == 200
    assert ok.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert no_key.status_code == 401 and bad_key.status_code == 403
    assert _count(server, "blobs") == before


def test_cloudevents_options_abuse_protection_handshake(server):
    with server.client() as c:
        ok = c.options(EG, headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"})
        stranger = c.options(EG, headers={"WebHook-Request-Origin": "evil.example.com"})
        no_key = c.options("/flows/blobs/triggers/events", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
        plain = c.options("/flows/orders/triggers/new")
    assert ok.status_code == 200
    assert ok.headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    assert ok.headers["webhook-allowed-rate"] == "*"
    assert "POST" in ok.headers["allow"]
    assert stranger.status_code == 403 and "webhook-allowed-origin" not in stranger.headers
    assert no_key.status_code == 401
    assert plain.status_code == 405


def test_eventgrid_and_cloudevents_deliveries(server):
    before = _count(server, "blobs")
    cloud = {"specversion": "1.0", "id": "ce-1", "source": "/mycontext", "type": "com.example.object.created",
             "time": "2026-11-01T10:00:00Z", "datacontenttype": "application/json", "data": {"n": 1}}
    with server.client() as c:
        grid = c.post(EG, json=[_eg_event("eg-1")], headers={"aeg-event-type": "Notification"})
        again = c.post(EG, json=[_eg_event("eg-1")], headers={"aeg-event-type": "Notification"})
        ce = c.post(EG, content=json.dumps(cloud), headers={"Content-Type": "application/cloudevents+json; charset=utf-8"})
        binary = c.post(EG, json={"n": 2}, headers={"ce-specversion": "1.0", "ce-id": "ce-2", "ce-source": "/x",
                                                    "ce-type": "t"})
        junk = c.post(EG, json={"hello": "world"})
        wrong = c.post("/flows/blobs/triggers/events?code=nope", json=[_eg_event("eg-2")])
    assert grid.status_code == 202 and again.json()["runId"] == grid.json()["runId"]
    assert ce.status_code == 202 and binary.status_code == 202
    assert junk.status_code == 400 and wrong.status_code == 403
    assert _count(server, "blobs") == before + 3
    grid_run = server.wait_run(grid.json()["runId"])
    assert json.loads(grid_run["outputs"])["body"][0]["id"] == "eg-1"
    assert json.loads(server.wait_run(ce.json()["runId"])["outputs"])["body"]["id"] == "ce-1"
    assert json.loads(grid_run["request"])["query"]["code"] == "***"


def test_no_secret_reaches_the_logs_or_the_state_file(server):
    with server.client() as c:
        c.post("/flows/orders/triggers/new", json={"orderId": "O-3", "qty": 1}, headers={"X-API-Key": KEY})
        c.post(EG, json=[_eg_event("eg-9")])
    time.sleep(0.3)
    data = server.state.read_bytes() + b"".join(p.read_bytes() for p in server.state.parent.glob("state.db-wal"))
    logs = "\n".join(server.lines)
    for name, value in SECRETS.items():
        if name == "FLOWRUN_ADMIN_TOKEN":
            continue
        assert value.encode() not in data, name
        assert value not in logs, name
