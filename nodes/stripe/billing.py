"""Subscriptions and invoices."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node, inputs_schema

from .client import call
from .schemas import EXPAND, EXTRA, ID, METADATA, merge, resource

SUBSCRIPTION = resource(
    "The subscription.",
    status={"type": "string", "description": "incomplete, trialing, active, past_due, "
            "canceled, unpaid, ..."},
    customer={"type": ["string", "object"], "description": "Customer id."},
    trial_end={"type": ["integer", "null"], "description": "Unix time the trial ends."},
    cancel_at_period_end={"type": "boolean", "description": "Cancels when the period ends."},
    latest_invoice={"type": ["string", "object", "null"], "description": "Latest invoice."},
    items={"type": "object", "description": "List object of subscription items."},
)


class CreateSubscription(Node):
    type = "stripe.CreateSubscription"
    title = "Subscribe a customer to a price"
    description = (
        "POST /v1/subscriptions with one item (`price` × `quantity`), or several through "
        "`items`. `trial_period_days` starts a free trial. Sent with the action's "
        "idempotency key, so a retry never creates a second subscription.")
    connection = "stripe"
    input_schema = {
        **inputs_schema(
            ["customer"],
            customer={**ID, "description": "Customer id (cus_...)."},
            price={"type": "string", "description": "Price id (price_...) of the single item."},
            quantity={"type": "integer", "minimum": 1, "description": "Quantity of `price`."},
            items={"type": "array", "minItems": 1, "description": "Several items instead of "
                   "price/quantity: [{price, quantity}].",
                   "items": {"type": "object", "required": ["price"], "properties": {
                       "price": {"type": "string"},
                       "quantity": {"type": "integer", "minimum": 1}}}},
            trial_period_days={"type": "integer", "minimum": 1,
                               "description": "Days of free trial before the first charge."},
            default_payment_method={"type": "string", "description": "PaymentMethod id; "
                                    "default: the customer's invoice default."},
            payment_behavior={"enum": ["allow_incomplete", "default_incomplete",
                                       "error_if_incomplete", "pending_if_incomplete"],
                              "description": "What happens when the first payment needs "
                                             "action or fails."},
            collection_method={"enum": ["charge_automatically", "send_invoice"],
                               "description": "Charge the card, or email invoices."},
            days_until_due={"type": "integer", "minimum": 0,
                            "description": "With send_invoice: days to pay."},
            metadata=METADATA, expand=EXPAND, extra=EXTRA),
        "oneOf": [{"required": ["price"]}, {"required": ["items"]}],
    }
    outputs = SUBSCRIPTION
    example = {"type": "stripe.CreateSubscription", "connection": "stripe",
               "inputs": {"customer": "{{ body('customer').id }}",
                          "price": "price_1MowQULkdIwHu7ixraBm864M", "quantity": 1,
                          "trial_period_days": 14,
                          "expand": ["latest_invoice.payment_intent"]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would subscribe {inputs.get('customer')} to {inputs.get('price') or 'the given items'}"

    async def run(self, inputs: dict, context: Any) -> Any:
        params = merge(inputs, "customer", "trial_period_days", "default_payment_method",
                       "payment_behavior", "collection_method", "days_until_due",
                       "metadata", "expand")
        if inputs.get("items"):
            params["items"] = inputs["items"]
        else:
            item = {"price": inputs["price"]}
            if inputs.get("quantity") is not None:
                item["quantity"] = inputs["quantity"]
            params["items"] = [item]
        return await call(context, lambda c: c.v1.subscriptions.create, params=params,
                          mutating=True)


class CancelSubscription(Node):
    type = "stripe.CancelSubscription"
    title = "Cancel a Stripe subscription"
    description = (
        "Cancel now (DELETE /v1/subscriptions/{subscription}), or with `at_period_end: "
        "true` at the end of the paid period (POST /v1/subscriptions/{subscription} "
        "cancel_at_period_end=true). Both carry the action's idempotency key.")
    connection = "stripe"
    input_schema = inputs_schema(
        ["subscription"],
        subscription={**ID, "description": "Subscription id (sub_...)."},
        at_period_end={"type": "boolean", "default": False,
                       "description": "Keep it active until the current period ends."},
        invoice_now={"type": "boolean", "description": "Immediate cancel: invoice pending "
                     "usage and prorations now."},
        prorate={"type": "boolean", "description": "Immediate cancel: credit unused time."},
        cancellation_details={"type": "object", "description": "{comment, feedback}."},
        extra=EXTRA)
    outputs = SUBSCRIPTION
    example = {"type": "stripe.CancelSubscription", "connection": "stripe",
               "inputs": {"subscription": "{{ triggerBody().subscription }}",
                          "at_period_end": True,
                          "cancellation_details": {"feedback": "too_expensive"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would cancel subscription {inputs.get('subscription')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        if inputs.get("at_period_end"):
            params = merge(inputs, "cancellation_details")
            params["cancel_at_period_end"] = True
            return await call(context, lambda c: c.v1.subscriptions.update,
                              inputs["subscription"], params=params, mutating=True)
        params = merge(inputs, "invoice_now", "prorate", "cancellation_details")
        return await call(context, lambda c: c.v1.subscriptions.cancel,
                          inputs["subscription"], params=params, mutating=True)


class GetInvoice(Node):
    type = "stripe.GetInvoice"
    title = "Get a Stripe invoice"
    description = "GET /v1/invoices/{invoice}."
    connection = "stripe"
    reads_only = True
    input_schema = inputs_schema(["invoice"], invoice={**ID, "description": "Invoice id (in_...)."},
                          expand=EXPAND)
    outputs = resource(
        "The invoice.",
        status={"type": "string", "description": "draft, open, paid, uncollectible or void."},
        amount_due={"type": "integer", "description": "Smallest currency unit."},
        amount_paid={"type": "integer", "description": "Smallest currency unit."},
        hosted_invoice_url={"type": ["string", "null"], "description": "Payment page."},
        invoice_pdf={"type": ["string", "null"], "description": "PDF download URL."},
    )
    example = {"type": "stripe.GetInvoice", "connection": "stripe",
               "inputs": {"invoice": "{{ triggerBody().data.object.invoice }}"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        return await call(context, lambda c: c.v1.invoices.retrieve, inputs["invoice"],
                          params=merge(inputs, "expand"))
