"""stripe.* nodes and the Stripe webhook verifier, specified against a local Stripe API.

Every flow runs through engine.run_file with a real connections.yaml whose endpoint points
the real `stripe` SDK at the recorder; assertions are on what the SDK actually sent.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs

import pytest
import yaml

import engine
from engine.plugin import AuthError, Connection, InboundRequest

import nodes.stripe as stripe_nodes
from nodes.stripe import IgnoredEvent, StripeWebhookAuth

API_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
WEBHOOK_SECRET = "whsec_test_5f1d2a9c8b7e6d4c3b2a1f0e"
FAST_RETRY = {"type": "fixed", "count": 2, "interval": "PT0.01S"}

CUSTOMER = {"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "jenny@example.com",
            "name": "Jenny Rosen", "livemode": False, "metadata": {"plan": "pro"},
            "invoice_settings": {"default_payment_method": None}, "created": 1680893993}
PAYMENT_INTENT = {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent",
                  "amount": 2000, "currency": "usd", "status": "succeeded",
                  "customer": "cus_NffrFeUfNV2Hib", "latest_charge": "ch_3MtwBwLkdIwHu7ix",
                  "client_secret": "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH",
                  "metadata": {"order_id": "6735"}}
REFUND = {"id": "re_1Nispe2eZvKYlo2Cd31jOCgZ", "object": "refund", "amount": 500,
          "status": "succeeded", "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa"}
SUBSCRIPTION = {"id": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "object": "subscription",
                "status": "trialing", "customer": "cus_NffrFeUfNV2Hib", "trial_end": 1682103993,
                "cancel_at_period_end": False,
                "items": {"object": "list", "data": [{"id": "si_NcLYdDxLHxlFo7",
                          "price": {"id": "price_1MowQULkdIwHu7ixraBm864M"}, "quantity": 2}]}}
INVOICE = {"id": "in_1MtHbELkdIwHu7ixl4OzzPMv", "object": "invoice", "status": "paid",
           "amount_due": 2000, "amount_paid": 2000, "customer": "cus_NffrFeUfNV2Hib",
           "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_YWNjdF8x"}
PAYMENT_METHOD = {"id": "pm_1MqLiJLkdIwHu7ixUEgbFdYF", "object": "payment_method",
                  "type": "card", "customer": "cus_NffrFeUfNV2Hib",
                  "card": {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2026}}


def stripe_error(type_: str, message: str, **fields: str) -> dict:
    return {"error": {"type": type_, "message": message, **fields,
                      "doc_url": f"https://stripe.com/docs/error-codes/{fields.get('code', '')}"}}


# -- harness -------------------------------------------------------------------------------

@pytest.fixture
def stripe_api(recorder, tmp_path, monkeypatch):
    """The recorder acting as api.stripe.com, and a connections.yaml pointing at it."""
    monkeypatch.setenv("TEST_STRIPE_API_KEY", API_KEY)
    write_connections(tmp_path, recorder.url, {"api_version": "2024-06-20"})
    return recorder


def write_connections(tmp_path, endpoint: str, settings: dict) -> None:
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump({"connections": {"stripe": {
        "kind": "stripe", "endpoint": endpoint, "settings": settings,
        "secrets": {"api_key": "TEST_STRIPE_API_KEY"}}}}))


def run(tmp_path, actions: dict, input=None):
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}},
                                    "actions": actions}, sort_keys=False))
    return engine.run_file(flow, input=input, state=tmp_path / "state.db",
                           connections=tmp_path / "connections.yaml")


def action(type_: str, inputs: dict, **extra) -> dict:
    return {"type": type_, "connection": "stripe", "inputs": inputs, **extra}


def form(req) -> dict:
    """The request's parameters (query string for GET/DELETE, form body for POST)."""
    fields = parse_qs(req.body.decode(), keep_blank_values=True) if req.body else {}
    fields.update(req.query)
    return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}


# -- the module ------------------------------------------------------------------------------

def test_importing_the_module_does_not_import_the_stripe_sdk():
    code = "import nodes.stripe, sys; assert 'stripe' not in sys.modules, 'stripe imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_module_declares_its_connection_nodes_and_webhook_auth():
    assert [c.kind for c in stripe_nodes.CONNECTIONS] == ["stripe"]
    assert set(stripe_nodes.CONNECTIONS[0].secret_names) == {"api_key", "webhook_secret"}
    assert {n.type for n in stripe_nodes.NODES} == {
        "stripe.CreateCustomer", "stripe.UpdateCustomer", "stripe.GetCustomer",
        "stripe.AttachPaymentMethod", "stripe.CreatePaymentIntent",
        "stripe.ConfirmPaymentIntent", "stripe.CapturePaymentIntent", "stripe.CreateRefund",
        "stripe.CreateSubscription", "stripe.CancelSubscription", "stripe.GetInvoice",
        "stripe.Request"}
    for node in stripe_nodes.NODES:
        assert node.connection == "stripe"
        assert node.example["type"] == node.type
        assert node.input_schema["additionalProperties"] is False
    assert [a.kind for a in stripe_nodes.AUTH] == ["stripe"]


def test_every_node_example_is_a_valid_action_of_the_flow_schema():
    from jsonschema import Draft202012Validator

    from engine.registry import default_registry
    from engine.schema import flow_schema

    validator = Draft202012Validator(flow_schema(default_registry()))
    for node in stripe_nodes.NODES:
        errors = list(validator.iter_errors({"actions": {"example": node.example}}))
        assert errors == [], (node.type, [e.message for e in errors])


# -- operations: what each node sends --------------------------------------------------------

OPERATIONS = [
    # (node type, inputs, method, path, response, expected parameters, mutating)
    ("stripe.CreateCustomer",
     {"email": "jenny@example.com", "name": "Jenny Rosen", "metadata": {"plan": "pro"},
      "address": {"city": "Berlin", "country": "DE"}},
     "POST", "/v1/customers", CUSTOMER,
     {"email": "jenny@example.com", "name": "Jenny Rosen", "metadata[plan]": "pro",
      "address[city]": "Berlin", "address[country]": "DE"}, True),
    ("stripe.UpdateCustomer",
     {"customer": "cus_NffrFeUfNV2Hib", "phone": "+15551234567",
      "extra": {"preferred_locales": ["de", "en"]}},
     "POST", "/v1/customers/cus_NffrFeUfNV2Hib", CUSTOMER,
     {"phone": "+15551234567", "preferred_locales[0]": "de", "preferred_locales[1]": "en"},
     True),
    ("stripe.GetCustomer", {"customer": "cus_NffrFeUfNV2Hib", "expand": ["default_source"]},
     "GET", "/v1/customers/cus_NffrFeUfNV2Hib", CUSTOMER,
     {"expand[0]": "default_source"}, False),
    ("stripe.CreatePaymentIntent",
     {"amount": 2000, "currency": "USD", "customer": "cus_NffrFeUfNV2Hib",
      "payment_method": "pm_card_visa", "confirm": True, "off_session": True,
      "metadata": {"order_id": "6735"}},
     "POST", "/v1/payment_intents", PAYMENT_INTENT,
     {"amount": "2000", "currency": "usd", "customer": "cus_NffrFeUfNV2Hib",
      "payment_method": "pm_card_visa", "confirm": "true", "off_session": "true",
      "metadata[order_id]": "6735"}, True),
    ("stripe.ConfirmPaymentIntent",
     {"payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "payment_method": "pm_card_visa",
      "return_url": "https://shop.example.com/return"},
     "POST", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/confirm", PAYMENT_INTENT,
     {"payment_method": "pm_card_visa", "return_url": "https://shop.example.com/return"},
     True),
    ("stripe.CapturePaymentIntent",
     {"payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount_to_capture": 1500},
     "POST", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/capture", PAYMENT_INTENT,
     {"amount_to_capture": "1500"}, True),
    ("stripe.CreateRefund",
     {"payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 500,
      "reason": "requested_by_customer"},
     "POST", "/v1/refunds", REFUND,
     {"payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": "500",
      "reason": "requested_by_customer"}, True),
    ("stripe.CreateSubscription",
     {"customer": "cus_NffrFeUfNV2Hib", "price": "price_1MowQULkdIwHu7ixraBm864M",
      "quantity": 2, "trial_period_days": 14},
     "POST", "/v1/subscriptions", SUBSCRIPTION,
     {"customer": "cus_NffrFeUfNV2Hib", "items[0][price]": "price_1MowQULkdIwHu7ixraBm864M",
      "items[0][quantity]": "2", "trial_period_days": "14"}, True),
    ("stripe.CancelSubscription",
     {"subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "invoice_now": True, "prorate": True},
     "DELETE", "/v1/subscriptions/sub_1MowQVLkdIwHu7ixeRlqHVzs",
     {**SUBSCRIPTION, "status": "canceled"},
     {"invoice_now": "true", "prorate": "true"}, True),
    ("stripe.CancelSubscription",
     {"subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "at_period_end": True,
      "cancellation_details": {"feedback": "too_expensive"}},
     "POST", "/v1/subscriptions/sub_1MowQVLkdIwHu7ixeRlqHVzs",
     {**SUBSCRIPTION, "cancel_at_period_end": True},
     {"cancel_at_period_end": "true", "cancellation_details[feedback]": "too_expensive"}, True),
    ("stripe.GetInvoice", {"invoice": "in_1MtHbELkdIwHu7ixl4OzzPMv"},
     "GET", "/v1/invoices/in_1MtHbELkdIwHu7ixl4OzzPMv", INVOICE, {}, False),
    ("stripe.Request",
     {"method": "POST", "path": "/v1/customers/{id}/balance_transactions",
      "path_params": {"id": "cus_NffrFeUfNV2Hib"},
      "params": {"amount": -500, "currency": "usd", "description": "Goodwill credit"}},
     "POST", "/v1/customers/cus_NffrFeUfNV2Hib/balance_transactions",
     {"id": "cbtxn_1MrMmk", "object": "customer_balance_transaction", "amount": -500},
     {"amount": "-500", "currency": "usd", "description": "Goodwill credit"}, True),
    ("stripe.Request",
     {"path": "/v1/charges", "params": {"limit": 3, "customer": "cus_NffrFeUfNV2Hib"}},
     "GET", "/v1/charges",
     {"object": "list", "url": "/v1/charges", "has_more": False, "data": []},
     {"limit": "3", "customer": "cus_NffrFeUfNV2Hib"}, False),
]


@pytest.mark.parametrize("type_, inputs, method, path, response, params, mutating", OPERATIONS,
                         ids=[f"{o[0]}-{o[2]}" for o in OPERATIONS])
def test_each_node_sends_one_authenticated_call_and_outputs_the_object(
        stripe_api, tmp_path, type_, inputs, method, path, response, params, mutating):
    stripe_api.route(method, path, json=response, headers={"Request-Id": "req_8PQm3"})

    result = run(tmp_path, {"op": action(type_, inputs)})

    assert result.status == "Succeeded", result.steps["op"].error
    assert result.steps["op"].outputs == response
    [req] = stripe_api.requests
    assert (req.method, req.path) == (method, path)
    assert form(req) == params
    assert req.header("Authorization") == f"Bearer {API_KEY}"
    assert req.header("Stripe-Version") == "2024-06-20"
    if mutating:
        assert req.header("Idempotency-Key") == f"{result.run_id}:op"
    else:
        assert req.header("Idempotency-Key") is None


def test_attach_payment_method_attaches_then_makes_it_the_invoice_default(stripe_api, tmp_path):
    stripe_api.route("POST", "/v1/payment_methods/pm_1MqLiJLkdIwHu7ixUEgbFdYF/attach",
                     json=PAYMENT_METHOD)
    updated = {**CUSTOMER, "invoice_settings": {
        "default_payment_method": "pm_1MqLiJLkdIwHu7ixUEgbFdYF"}}
    stripe_api.route("POST", "/v1/customers/cus_NffrFeUfNV2Hib", json=updated)

    result = run(tmp_path, {"attach": action("stripe.AttachPaymentMethod", {
        "payment_method": "pm_1MqLiJLkdIwHu7ixUEgbFdYF", "customer": "cus_NffrFeUfNV2Hib"})})

    assert result.status == "Succeeded"
    assert result.steps["attach"].outputs == {"payment_method": PAYMENT_METHOD,
                                              "customer": updated}
    attach, default = stripe_api.requests
    assert form(attach) == {"customer": "cus_NffrFeUfNV2Hib"}
    assert form(default) == {
        "invoice_settings[default_payment_method]": "pm_1MqLiJLkdIwHu7ixUEgbFdYF"}
    # one idempotency key per distinct call: Stripe refuses a key reused with other params
    assert attach.header("Idempotency-Key") == f"{result.run_id}:attach"
    assert default.header("Idempotency-Key") == f"{result.run_id}:attach:default"


def test_outputs_of_one_stripe_action_feed_the_next(stripe_api, tmp_path):
    stripe_api.route("POST", "/v1/customers", json=CUSTOMER)
    stripe_api.route("POST", "/v1/payment_intents", json=PAYMENT_INTENT)

    result = run(tmp_path, {
        "customer": action("stripe.CreateCustomer", {"email": "{{ triggerBody().email }}"}),
        "charge": action("stripe.CreatePaymentIntent", {
            "amount": "{{ triggerBody().cents }}", "currency": "usd",
            "customer": "{{ body('customer').id }}", "confirm": True},
            runAfter={"customer": ["Succeeded"]}),
    }, input={"email": "jenny@example.com", "cents": 2000})

    assert result.status == "Succeeded"
    assert form(stripe_api.requests[1])["customer"] == "cus_NffrFeUfNV2Hib"
    assert form(stripe_api.requests[1])["amount"] == "2000"


def test_connected_account_is_sent_as_stripe_account(stripe_api, tmp_path):
    write_connections(tmp_path, stripe_api.url, {"stripe_account": "acct_1032D82eZvKYlo2C"})
    stripe_api.route("GET", "/v1/invoices/in_1", json=INVOICE)

    result = run(tmp_path, {"get": action("stripe.GetInvoice", {"invoice": "in_1"})})

    assert result.status == "Succeeded"
    assert stripe_api.requests[0].header("Stripe-Account") == "acct_1032D82eZvKYlo2C"


def test_generic_request_escapes_path_values_and_refuses_other_hosts(stripe_api, tmp_path):
    stripe_api.route("GET", "/v1/customers/cus_a%2F..%2Fx", json=CUSTOMER)

    result = run(tmp_path, {
        "ok": action("stripe.Request", {"path": "/v1/customers/{id}",
                                        "path_params": {"id": "cus_a/../x"}}),
        "bad": action("stripe.Request", {"path": "/v1/customers/{id}",
                                         "path_params": {"id": ".."}},
                      runAfter={"ok": ["Succeeded"]}),
    })

    assert result.steps["ok"].status == "Succeeded"
    assert stripe_api.requests[0].path == "/v1/customers/cus_a%2F..%2Fx"
    assert result.steps["bad"].status == "Failed"
    assert result.steps["bad"].error["code"] == "InvalidPath"
    assert len(stripe_api.requests) == 1


# -- errors: how Stripe answers become step statuses -----------------------------------------

ERRORS = [
    # (status, body, expected code, expected details subset)
    (402, stripe_error("card_error", "Your card has insufficient funds.", code="card_declined",
                       decline_code="insufficient_funds", param="payment_method"),
     "insufficient_funds",
     {"status": 402, "type": "card_error", "code": "card_declined",
      "decline_code": "insufficient_funds", "param": "payment_method"}),
    (402, stripe_error("card_error", "Your card has expired.", code="expired_card",
                       param="exp_month"),
     "expired_card", {"status": 402, "type": "card_error", "code": "expired_card"}),
    (400, stripe_error("invalid_request_error", "Missing required param: amount.",
                       code="parameter_missing", param="amount"),
     "parameter_missing",
     {"status": 400, "type": "invalid_request_error", "code": "parameter_missing",
      "param": "amount"}),
    (404, stripe_error("invalid_request_error", "No such payment_intent: 'pi_x'",
                       code="resource_missing", param="intent"),
     "resource_missing", {"status": 404, "code": "resource_missing"}),
    (401, {"error": {"type": "invalid_request_error",
                     "message": "Invalid API Key provided: sk_test_****7dc"}},
     "authentication_error", {"status": 401}),
    (400, stripe_error("idempotency_error", "Keys for idempotent requests can only be used "
                       "with the same parameters they were first used with."),
     "idempotency_error", {"status": 400, "type": "idempotency_error"}),
]


@pytest.mark.parametrize("status, body, code, details", ERRORS,
                         ids=[f"{e[0]}-{e[2]}" for e in ERRORS])
def test_client_errors_fail_the_action_without_retrying(stripe_api, tmp_path, status, body,
                                                        code, details):
    stripe_api.route("POST", "/v1/payment_intents", status=status, json=body,
                     headers={"Request-Id": "req_Xk3Jw9", "Stripe-Should-Retry": "false"})

    result = run(tmp_path, {"charge": action(
        "stripe.CreatePaymentIntent", {"amount": 2000, "currency": "usd", "confirm": True},
        retryPolicy=FAST_RETRY)})

    step = result.steps["charge"]
    assert result.status == "Failed"
    assert (step.status, step.attempts) == ("Failed", 1)
    assert step.error["code"] == code
    assert step.error["message"] == body["error"]["message"]
    assert details.items() <= step.error["details"].items()
    assert step.error["details"]["request_id"] == "req_Xk3Jw9"
    assert len(stripe_api.requests) == 1


def test_a_500_is_retried_by_the_engine_with_the_same_idempotency_key(stripe_api, tmp_path):
    stripe_api.route("POST", "/v1/customers", status=500, times=1,
                     json=stripe_error("api_error", "Something went wrong on Stripe's end."))
    stripe_api.route("POST", "/v1/customers", json=CUSTOMER)

    result = run(tmp_path, {"create": action("stripe.CreateCustomer",
                                             {"email": "jenny@example.com"},
                                             retryPolicy=FAST_RETRY)})

    step = result.steps["create"]
    assert (step.status, step.attempts) == ("Succeeded", 2)
    assert step.outputs == CUSTOMER
    first, second = stripe_api.requests  # exactly one HTTP call per attempt
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key") \
        == f"{result.run_id}:create"
    assert first.body == second.body


def test_the_sdk_does_not_retry_on_its_own_so_attempts_count_http_calls(stripe_api, tmp_path):
    stripe_api.route("POST", "/v1/refunds", status=503,
                     json=stripe_error("api_error", "Service unavailable."))

    result = run(tmp_path, {"refund": action("stripe.CreateRefund", {"charge": "ch_1"},
                                             retryPolicy=FAST_RETRY)})

    step = result.steps["refund"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "api_error"
    assert step.error["details"]["status"] == 503
    assert len(stripe_api.requests) == 3
    assert len({r.header("Idempotency-Key") for r in stripe_api.requests}) == 1


def test_a_429_waits_for_retry_after_then_succeeds(stripe_api, tmp_path):
    stripe_api.route("GET", "/v1/customers/cus_NffrFeUfNV2Hib", status=429, times=1,
                     headers={"Retry-After": "1"},
                     json=stripe_error("invalid_request_error", "Too many requests hit the "
                                       "API too quickly.", code="rate_limit"))
    stripe_api.route("GET", "/v1/customers/cus_NffrFeUfNV2Hib", json=CUSTOMER)

    result = run(tmp_path, {"get": action("stripe.GetCustomer",
                                          {"customer": "cus_NffrFeUfNV2Hib"},
                                          retryPolicy=FAST_RETRY)})

    step = result.steps["get"]
    assert (step.status, step.attempts) == ("Succeeded", 2)
    assert step.duration >= 1.0  # Retry-After (1 s) won over the policy's 10 ms interval
    assert len(stripe_api.requests) == 2


def test_stripe_should_retry_true_makes_a_409_lock_timeout_retryable(stripe_api, tmp_path):
    stripe_api.route("POST", "/v1/customers/cus_1", status=409, times=1,
                     headers={"Stripe-Should-Retry": "true"},
                     json=stripe_error("invalid_request_error", "This object cannot be "
                                       "accessed right now because another API request or "
                                       "Stripe process is currently accessing it.",
                                       code="lock_timeout"))
    stripe_api.route("POST", "/v1/customers/cus_1", json=CUSTOMER)

    result = run(tmp_path, {"upd": action("stripe.UpdateCustomer",
                                          {"customer": "cus_1", "name": "J"},
                                          retryPolicy=FAST_RETRY)})

    assert (result.steps["upd"].status, result.steps["upd"].attempts) == ("Succeeded", 2)


def test_an_unreachable_api_is_a_retryable_connection_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TEST_STRIPE_API_KEY", API_KEY)
    write_connections(tmp_path, f"http://127.0.0.1:{port}", {})

    result = run(tmp_path, {"get": action("stripe.GetInvoice", {"invoice": "in_1"},
                                          retryPolicy=FAST_RETRY)})

    step = result.steps["get"]
    assert (step.status, step.attempts) == ("Failed", 3)
    assert step.error["code"] == "api_connection_error"


def test_the_api_key_never_appears_in_a_step_error(stripe_api, tmp_path):
    stripe_api.route("GET", "/v1/invoices/in_1", status=401, json={"error": {
        "type": "invalid_request_error", "message": f"Invalid API Key provided: {API_KEY}"}})

    result = run(tmp_path, {"get": action("stripe.GetInvoice", {"invoice": "in_1"})})

    assert result.steps["get"].error["code"] == "authentication_error"
    assert API_KEY not in json.dumps(result.steps["get"].error)


# -- inbound webhooks ----------------------------------------------------------------------------

EVENT = {"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "api_version": "2024-06-20",
         "created": 1686089970, "type": "payment_intent.succeeded", "livemode": False,
         "data": {"object": PAYMENT_INTENT}, "pending_webhooks": 1,
         "request": {"id": None, "idempotency_key": None}}


def webhook_connection(secret: str | None = WEBHOOK_SECRET) -> Connection:
    spec = stripe_nodes.CONNECTIONS[0]
    secrets = {"api_key": API_KEY, **({"webhook_secret": secret} if secret else {})}
    return Connection("stripe", spec, {}, secrets, None)


def delivery(event: dict = EVENT, *, secret: str = WEBHOOK_SECRET,
             timestamp: int | None = None, body: bytes | None = None) -> InboundRequest:
    """A request as Stripe sends it, signed with the SDK's own test-header helper."""
    from stripe import WebhookSignature

    payload = json.dumps(event)
    header = WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return InboundRequest(method="POST", url="https://hooks.example.com/stripe",
                          headers={"content-type": "application/json",
                                   "stripe-signature": header,
                                   "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
                          body=body if body is not None else payload.encode())


def verify(request: InboundRequest, options: dict | None = None,
           connection: Connection | None = None) -> str | None:
    return StripeWebhookAuth().verify(request, connection or webhook_connection(), options or {})


def test_a_validly_signed_event_is_accepted_and_keyed_by_its_event_id():
    assert verify(delivery()) == "evt_1NG8Du2eZvKYlo2CUI79vXWy"


def test_a_replayed_event_yields_the_same_dedupe_key_so_it_runs_once():
    first = verify(delivery())
    replay = verify(delivery(timestamp=int(time.time()) - 60))  # re-signed retry of the event
    assert first == replay == EVENT["id"]
    assert verify(delivery({**EVENT, "id": "evt_other"})) != first


@pytest.mark.parametrize("request_, status, reason", [
    (lambda: delivery(secret="whsec_forged_by_someone_else"), 403, "no matching signature"),
    (lambda: delivery(body=json.dumps({**EVENT, "data": {"object": {
        **PAYMENT_INTENT, "amount": 1}}}).encode()), 403, "body changed after signing"),
    (lambda: delivery(timestamp=int(time.time()) - 301), 403, "older than the tolerance"),
    (lambda: InboundRequest("POST", "https://hooks.example.com/stripe",
                            {"content-type": "application/json"},
                            json.dumps(EVENT).encode()), 401, "no Stripe-Signature header"),
    (lambda: InboundRequest("POST", "https://hooks.example.com/stripe",
                            {"stripe-signature": "t=abc,v1=nothex"},
                            json.dumps(EVENT).encode()), 403, "malformed header"),
    (lambda: delivery(body=b"\xff\xfe not utf-8"), 403, "not a Stripe body at all"),
], ids=["forged", "tampered", "expired", "missing", "malformed", "binary"])
def test_forged_tampered_expired_or_unsigned_events_are_refused(request_, status, reason):
    with pytest.raises(AuthError) as refused:
        verify(request_())
    assert refused.value.status == status, reason


def test_tolerance_is_an_option():
    old = delivery(timestamp=int(time.time()) - 500)
    with pytest.raises(AuthError):
        verify(old)  # default tolerance: 300 s
    assert verify(old, {"tolerance": 600}) == EVENT["id"]


def test_events_option_accepts_listed_types_and_acknowledges_the_rest_without_a_run():
    auth, conn = StripeWebhookAuth(), webhook_connection()
    options = {"events": ["payment_intent.succeeded", "customer.subscription.*"]}
    sub = {**EVENT, "id": "evt_sub", "type": "customer.subscription.deleted"}
    for event in (EVENT, sub):
        assert auth.handshake(delivery(event), conn, options) is None  # go on to verify
        assert auth.verify(delivery(event), conn, options) == event["id"]

    other = {**EVENT, "id": "evt_inv", "type": "invoice.paid"}
    status, headers, body = auth.handshake(delivery(other), conn, options)
    assert status == 202  # a 2xx: Stripe will not redeliver it; no run starts
    assert json.loads(body) == {"received": True, "ignored": "invoice.paid"}
    with pytest.raises(IgnoredEvent) as ignored:  # if verify is reached anyway
        auth.verify(delivery(other), conn, options)
    assert (ignored.value.status, ignored.value.event_type) == (202, "invoice.paid")


def test_without_an_events_option_there_is_no_handshake():
    assert StripeWebhookAuth().handshake(delivery(), webhook_connection(), {}) is None


def test_an_event_is_authenticated_before_its_type_is_looked_at():
    forged_other = {**EVENT, "type": "invoice.paid"}
    forged = delivery(forged_other, secret="whsec_wrong")
    for step in (StripeWebhookAuth().handshake, StripeWebhookAuth().verify):
        with pytest.raises(AuthError) as refused:
            step(forged, webhook_connection(), {"events": ["charge.*"]})
        assert refused.value.status == 403


def test_a_connection_without_webhook_secret_refuses_everything():
    with pytest.raises(AuthError) as refused:
        verify(delivery(), connection=webhook_connection(secret=None))
    assert refused.value.status == 403


def test_every_exception_class_of_the_stripe_sdk_is_mapped_by_a_declared_row():
    import stripe
    import stripe.oauth_error

    from nodes.stripe.client import STRIPE
    from tests.support.sdk import exception_classes, unmapped

    classes = exception_classes(stripe.StripeError)
    assert stripe.CardError in classes and stripe.oauth_error.InvalidGrantError in classes
    assert unmapped(STRIPE, classes) == []


def test_a_traced_run_sends_each_attempt_spans_traceparent_to_stripe_beside_the_idempotency_key(stripe_api, tmp_path):
    from tests.support.tracing import traceparent, traced

    stripe_api.route("POST", "/v1/customers", json=CUSTOMER)
    stripe_api.route("GET", "/v1/invoices/in_1", json=INVOICE)
    with traced() as spans:
        result = run(tmp_path, {
            "customer": action("stripe.CreateCustomer", {"email": "jenny@example.com"}),
            "get": action("stripe.GetInvoice", {"invoice": "in_1"}, runAfter={"customer": ["Succeeded"]})})
    assert result.status == "Succeeded"
    created, got = stripe_api.requests
    assert created.header("traceparent") == traceparent(spans.named("customer")[0])
    assert created.header("Idempotency-Key")  # the options the node gives are kept
    assert got.header("traceparent") == traceparent(spans.named("get")[0])
