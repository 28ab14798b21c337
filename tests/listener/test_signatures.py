"""Signatures cover what they claim to, and signed timestamps are plain integers.

Twilio: the signature covers the URL and a form post's fields; any other body must be pinned
by ``bodySHA256`` in the signed URL, and a GET carries no body. Timestamps (hmac's
``timestampHeader``, Stripe's ``t=``): digits only, so ``nan``, ``inf``, ``1e10``, `` 123``,
``0x10``, ``+5``, huge or empty values get 403 even when the signature over them is valid.
Signatures are computed with the vendors' own helpers; the app runs in process."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from engine.plugin import AuthError, InboundRequest

from .conftest import SECRETS
from .inprocess import serving

FLOWS = {
    "sms.yaml": """\
name: sms
triggers:
  inbound: {type: Request, auth: {type: twilio, connection: twilio}}
  status: {type: Request, auth: {type: twilio, connection: twilio}, inputs: {method: GET}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
""",
    "github.yaml": """\
name: github
triggers:
  signed:
    type: Request
    auth: {type: hmac, connection: github, header: X-Signature, prefix: "v1=", timestampHeader: X-Timestamp,
           tolerance: 60}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody() }}"}
""",
    "stripe.yaml": """\
name: stripe_events
triggers:
  webhook: {type: Request, auth: {type: stripe, connection: stripe, tolerance: 300}}
actions:
  seen: {type: Compose, inputs: "{{ triggerBody().id }}"}
""",
}
BASE = "http://testserver"
SMS = "/flows/sms/triggers/inbound"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signatures")
    with pytest.MonkeyPatch.context() as mp, serving(tmp / "flows", FLOWS, state=tmp / "state.db",
                                                     monkeypatch=mp) as served:
        yield served


def _validator():
    from twilio.request_validator import RequestValidator

    return RequestValidator(SECRETS["TEST_TWILIO_TOKEN"])


def _runs(app, flow: str) -> int:
    return len(app.runs(flow))


# -- Twilio ---------------------------------------------------------------------------------------
def test_twilio_form_post_signed_over_url_and_fields_is_accepted(app):
    form = {"From": "+15551234567", "Body": "hello"}
    sig = _validator().compute_signature(BASE + SMS, form)
    ok = app.client.post(SMS, data=form, headers={"X-Twilio-Signature": sig})
    altered = app.client.post(SMS, data=dict(form, Body="pay me"), headers={"X-Twilio-Signature": sig})
    assert ok.status_code == 202 and altered.status_code == 403


@pytest.mark.parametrize("content_type, body", [
    ("application/json", b'{"Body": "attacker"}'), ("text/plain", b"attacker"), ("application/xml", b"<a/>"),
    ("application/octet-stream", b"\x00\x01"), (None, b'{"Body": "attacker"}'),
])
def test_twilio_url_only_signature_does_not_cover_a_non_form_body(app, content_type, body):
    sig = _validator().compute_signature(BASE + SMS, {})  # URL only, as for an empty or JSON request
    headers = {"X-Twilio-Signature": sig, **({"Content-Type": content_type} if content_type else {})}
    before = _runs(app, "sms")
    r = app.client.post(SMS, content=body, headers=headers)
    assert r.status_code == 403 and "bodySHA256" in r.json()["error"]
    assert _runs(app, "sms") == before


def test_twilio_json_body_pinned_by_body_sha256_is_accepted_and_an_altered_one_is_not(app):
    validator = _validator()
    body = '{"Body": "hello", "n": 1}'
    url = f"{SMS}?bodySHA256={validator.compute_hash(body)}"
    sig = validator.compute_signature(BASE + url, {})
    headers = {"X-Twilio-Signature": sig, "Content-Type": "application/json"}
    ok = app.client.post(url, content=body.encode(), headers=headers)
    altered = app.client.post(url, content=body.replace("1", "2").encode(), headers=headers)
    rehashed = body.replace("1", "2")
    other = f"{SMS}?bodySHA256={validator.compute_hash(rehashed)}"  # a new hash needs a new signature
    swapped = app.client.post(other, content=rehashed.encode(), headers=headers)
    assert ok.status_code == 202, ok.text
    assert altered.status_code == 403 and "bodySHA256" in altered.json()["error"]
    assert swapped.status_code == 403


def test_twilio_body_sha256_covers_form_bodies_too(app):
    validator = _validator()
    url = f"{SMS}?bodySHA256={validator.compute_hash('Body=one')}"
    r = app.client.post(url, content=b"Body=two", headers={"Content-Type": "application/x-www-form-urlencoded",
                                                          "X-Twilio-Signature": validator.compute_signature(
                                                              BASE + url, {"Body": "two"})})
    assert r.status_code == 403


def test_twilio_get_with_a_url_only_signature_is_accepted_without_a_body_and_refused_with_one(app):
    url = "/flows/sms/triggers/status?CallSid=CA1&CallStatus=completed"
    sig = _validator().compute_signature(BASE + url, {})
    assert app.client.get(url, headers={"X-Twilio-Signature": sig}).status_code == 202
    before = _runs(app, "sms")
    with_body = app.client.request("GET", url, content=b'{"CallStatus": "forged"}',
                                   headers={"X-Twilio-Signature": sig, "Content-Type": "application/json"})
    assert with_body.status_code == 400 and _runs(app, "sms") == before


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_twilio_verifier_itself_refuses_a_body_on_get(app, method):
    entry = app.listener.table.request("sms", "status")  # the served trigger's own verifier and connection
    url = BASE + "/flows/sms/triggers/status?CallSid=CA1"
    request = InboundRequest(method=method, url=url, body=b"CallStatus=forged",
                             headers={"x-twilio-signature": _validator().compute_signature(url, {})})
    with pytest.raises(AuthError) as caught:
        entry.auth.verify(request, entry.connection, entry.options)
    assert caught.value.status == 403


# -- timestamps -----------------------------------------------------------------------------------
def _malformed(now: int) -> list[str]:
    return ["nan", "NaN", "inf", "-inf", "Infinity", f"{now:e}", "1e10", f" {now}", f"{now} ", hex(now), "0x10",
            f"+{now}", "+5", f"-{now}", f"{now}.0", f"{str(now)[:4]}_{str(now)[4:]}", "9" * 13, "9" * 5_000, "",
            "١٧٠٠٠٠٠٠٠٠"]


def test_hmac_timestamps_must_be_plain_integers(app):
    body = b'{"event": "ping"}'
    now = int(time.time())
    before = _runs(app, "github")
    for stamp in _malformed(now):
        mac = hmac.new(SECRETS["TEST_HMAC_SECRET"].encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        r = app.client.post("/flows/github/triggers/signed", content=body,
                            headers={"X-Timestamp": stamp.encode(), "X-Signature": f"v1={mac}",
                                     "Content-Type": "application/json"})
        assert r.status_code == 403, (stamp[:20], r.status_code, r.text)
    assert _runs(app, "github") == before
    mac = hmac.new(SECRETS["TEST_HMAC_SECRET"].encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    ok = app.client.post("/flows/github/triggers/signed", content=body,
                         headers={"X-Timestamp": str(now), "X-Signature": f"v1={mac}"})
    assert ok.status_code == 202


def test_stripe_t_must_be_a_plain_integer(app):
    from stripe import WebhookSignature

    secret = SECRETS["TEST_STRIPE_WHSEC"]
    payload = json.dumps({"id": "evt_ts", "object": "event", "type": "payment_intent.succeeded", "data": {}})
    now = int(time.time())
    before = _runs(app, "stripe_events")
    for stamp in _malformed(now) + [str(now + 3_600)]:  # the SDK checks only the past; the future too
        try:
            signed = "%d.%s" % (int(stamp), payload)  # what the SDK would check, where it parses t at all
        except ValueError:
            signed = f"{stamp}.{payload}"
        mac = WebhookSignature._compute_signature(signed, secret)
        r = app.client.post("/flows/stripe_events/triggers/webhook", content=payload.encode(),
                            headers={"Stripe-Signature": f"t={stamp},v1={mac}".encode(),
                                     "Content-Type": "application/json"})
        assert r.status_code == 403, (stamp[:20], r.status_code, r.text)
    assert _runs(app, "stripe_events") == before
    ok = app.client.post("/flows/stripe_events/triggers/webhook", content=payload.encode(),
                         headers={"Stripe-Signature": WebhookSignature.generate_signature_header(payload, secret),
                                  "Content-Type": "application/json"})
    assert ok.status_code == 202, ok.text
