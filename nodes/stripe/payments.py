"""PaymentIntents and refunds."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node, inputs_schema

# currencies Stripe counts in whole units (amount 500 JPY is ¥500); the rest in hundredths
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())


def money(amount: Any, currency: Any) -> str:
    """Stripe's minor-unit ``amount`` as people read it: (1200, "usd") -> "12.00 USD"."""
    code = str(currency or "").lower()
    if isinstance(amount, bool) or not isinstance(amount, int):
        return f"{amount} {code.upper()}".strip()
    return f"{amount} {code.upper()}" if code in ZERO_DECIMAL else f"{amount / 100:.2f} {code.upper()}"

from .client import call
from .schemas import EXPAND, EXTRA, ID, METADATA, merge, resource

_AMOUNT = {"type": "integer", "minimum": 1,
           "description": "Amount in the currency's smallest unit (cents): 1099 = $10.99."}

PAYMENT_INTENT = resource(
    "The PaymentIntent.",
    amount={"type": "integer", "description": "Amount in the smallest currency unit."},
    currency={"type": "string", "description": "Three-letter ISO currency code."},
    status={"type": "string", "description": "requires_payment_method, requires_confirmation, "
            "requires_action, processing, requires_capture, canceled or succeeded."},
    client_secret={"type": ["string", "null"], "description": "Secret for client-side "
                   "confirmation (Stripe.js)."},
    latest_charge={"type": ["string", "object", "null"], "description": "Latest charge."},
    next_action={"type": ["object", "null"], "description": "What the customer must do "
                 "next (e.g. 3-D Secure) when status is requires_action."},
)
PAYMENT_INTENT["examples"] = [{"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 1200,
                               "currency": "usd", "status": "succeeded", "client_secret": None,
                               "latest_charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa", "next_action": None}]

_CONFIRM_FIELDS = {
    "payment_method": {"type": "string", "description": "PaymentMethod id (pm_...)."},
    "return_url": {"type": "string", "description": "Where to send the customer after a "
                   "redirect-based authentication."},
    "off_session": {"type": "boolean", "description": "The customer is not present "
                    "(saved card, merchant-initiated)."},
    "receipt_email": {"type": "string", "description": "Email a receipt to this address."},
    "expand": EXPAND,
}


class CreatePaymentIntent(Node):
    type = "stripe.CreatePaymentIntent"
    title = "Create a Stripe PaymentIntent"
    description = (
        "POST /v1/payment_intents. With `confirm: true` it also charges the payment method; "
        "a decline fails the action with the decline code (e.g. insufficient_funds) and is "
        "never retried. Sent with the action's idempotency key, so a retry never charges "
        "twice.")
    connection = "stripe"
    input_schema = inputs_schema(
        ["amount", "currency"],
        amount=_AMOUNT,
        currency={"type": "string", "pattern": "^[a-zA-Z]{3}$",
                  "description": "Three-letter ISO currency code, e.g. usd."},
        customer={"type": "string", "description": "Customer id (cus_...)."},
        description={"type": "string", "description": "Shown in the Dashboard and receipts."},
        confirm={"type": "boolean", "description": "Confirm immediately (charge now)."},
        capture_method={"enum": ["automatic", "automatic_async", "manual"],
                        "description": "manual: authorize only; capture later with "
                                       "stripe.CapturePaymentIntent."},
        automatic_payment_methods={"type": "object", "description": "e.g. {enabled: true, "
                                   "allow_redirects: never}."},
        payment_method_types={"type": "array", "items": {"type": "string"},
                              "description": "e.g. [card]."},
        setup_future_usage={"enum": ["on_session", "off_session"],
                            "description": "Save the payment method for later use."},
        statement_descriptor_suffix={"type": "string", "maxLength": 22,
                                     "description": "Suffix on the card statement."},
        metadata=METADATA,
        extra=EXTRA,
        **_CONFIRM_FIELDS,
    )
    outputs = PAYMENT_INTENT
    example = {"type": "stripe.CreatePaymentIntent", "connection": "stripe",
               "inputs": {"amount": "{{ triggerBody().total_cents }}", "currency": "usd",
                          "customer": "{{ body('customer').id }}",
                          "payment_method": "{{ triggerBody().payment_method }}",
                          "confirm": True, "off_session": True,
                          "metadata": {"order_id": "{{ triggerBody().order_id }}"}},
               "retryPolicy": {"type": "exponential", "count": 3, "interval": "PT2S"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return ("would charge" if inputs.get("confirm") else "would create a payment intent for") + f" {money(inputs.get('amount'), inputs.get('currency'))}" + (f" to {inputs['customer']}" if inputs.get("customer") else "")

    async def run(self, inputs: dict, context: Any) -> Any:
        params = merge(inputs, *self.input_schema["properties"].keys() - {"extra"})
        params["currency"] = params["currency"].lower()
        return await call(context, lambda c: c.v1.payment_intents.create, params=params,
                          mutating=True)


class ConfirmPaymentIntent(Node):
    type = "stripe.ConfirmPaymentIntent"
    title = "Confirm a Stripe PaymentIntent"
    description = ("POST /v1/payment_intents/{payment_intent}/confirm: attempt the payment. "
                   "Check `status` (succeeded, requires_action, requires_capture, ...).")
    connection = "stripe"
    input_schema = inputs_schema(["payment_intent"],
                          payment_intent={**ID, "description": "PaymentIntent id (pi_...)."},
                          extra=EXTRA, **_CONFIRM_FIELDS)
    outputs = PAYMENT_INTENT
    example = {"type": "stripe.ConfirmPaymentIntent", "connection": "stripe",
               "inputs": {"payment_intent": "{{ body('intent').id }}",
                          "payment_method": "pm_card_visa"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would confirm (charge) {inputs.get('payment_intent')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        return await call(context, lambda c: c.v1.payment_intents.confirm,
                          inputs["payment_intent"], params=merge(inputs, *_CONFIRM_FIELDS),
                          mutating=True)


class CapturePaymentIntent(Node):
    type = "stripe.CapturePaymentIntent"
    title = "Capture an authorized PaymentIntent"
    description = ("POST /v1/payment_intents/{payment_intent}/capture for an intent created "
                   "with capture_method: manual (status requires_capture). Leave "
                   "`amount_to_capture` out to capture the full authorized amount.")
    connection = "stripe"
    input_schema = inputs_schema(
        ["payment_intent"],
        payment_intent={**ID, "description": "PaymentIntent id (pi_...)."},
        amount_to_capture={**_AMOUNT, "description": "Capture less than authorized (the "
                           "rest is released)."},
        metadata=METADATA, expand=EXPAND, extra=EXTRA)
    outputs = PAYMENT_INTENT
    example = {"type": "stripe.CapturePaymentIntent", "connection": "stripe",
               "inputs": {"payment_intent": "{{ body('authorize').id }}"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would capture {inputs.get('payment_intent')}" + (f" ({inputs['amount_to_capture']} minor units)" if inputs.get("amount_to_capture") else "")

    async def run(self, inputs: dict, context: Any) -> Any:
        params = merge(inputs, "amount_to_capture", "metadata", "expand")
        return await call(context, lambda c: c.v1.payment_intents.capture,
                          inputs["payment_intent"], params=params, mutating=True)


class CreateRefund(Node):
    type = "stripe.CreateRefund"
    title = "Refund a Stripe payment"
    description = ("POST /v1/refunds for a PaymentIntent or a charge; full unless `amount` "
                   "is given. Sent with the action's idempotency key, so a retry never "
                   "refunds twice.")
    connection = "stripe"
    input_schema = {
        **inputs_schema([], payment_intent={"type": "string", "description": "PaymentIntent id."},
                 charge={"type": "string", "description": "Charge id (ch_...)."},
                 amount={**_AMOUNT, "description": "Partial refund, smallest currency unit."},
                 reason={"enum": ["duplicate", "fraudulent", "requested_by_customer"],
                         "description": "Why (shown to the customer's bank for fraud)."},
                 metadata=METADATA, expand=EXPAND, extra=EXTRA),
        "oneOf": [{"required": ["payment_intent"]}, {"required": ["charge"]}],
    }
    outputs = resource(
        "The refund.",
        amount={"type": "integer", "description": "Refunded amount."},
        status={"type": "string", "description": "pending, requires_action, succeeded, "
                "failed or canceled."},
        payment_intent={"type": ["string", "null"], "description": "PaymentIntent id."},
    )
    example = {"type": "stripe.CreateRefund", "connection": "stripe",
               "inputs": {"payment_intent": "{{ triggerBody().payment_intent }}",
                          "reason": "requested_by_customer"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would refund {inputs.get('payment_intent') or inputs.get('charge')}" + (f" ({inputs['amount']} minor units)" if inputs.get("amount") else " in full")

    async def run(self, inputs: dict, context: Any) -> Any:
        params = merge(inputs, "payment_intent", "charge", "amount", "reason", "metadata",
                       "expand")
        return await call(context, lambda c: c.v1.refunds.create, params=params,
                          mutating=True)
