"""Customers and their payment methods."""
from __future__ import annotations

from typing import Any

from engine.plugin import Node, inputs_schema

from .client import call
from .schemas import ADDRESS, EXPAND, EXTRA, ID, METADATA, merge, resource

_FIELDS = {
    "email": {"type": "string", "description": "Customer's email address."},
    "name": {"type": "string", "description": "Full name or business name."},
    "phone": {"type": "string", "description": "Phone number."},
    "description": {"type": "string", "description": "Free-form note shown in the Dashboard."},
    "address": ADDRESS,
    "metadata": METADATA,
    "expand": EXPAND,
    "extra": EXTRA,
}
_NAMED = ("email", "name", "phone", "description", "address", "metadata", "expand")

CUSTOMER = resource(
    "The customer.",
    email={"type": ["string", "null"], "description": "Email address."},
    name={"type": ["string", "null"], "description": "Name."},
    invoice_settings={"type": "object", "description": "Includes "
                      "default_payment_method, the id charged by subscriptions/invoices."},
    metadata={"type": "object", "description": "Metadata."},
)
CUSTOMER["examples"] = [{"id": "cus_NffrFeUfNV2Hib", "object": "customer", "email": "jenny.rosen@example.com",
                         "name": "Jenny Rosen", "phone": "+15555550123", "invoice_settings": {
                             "default_payment_method": None}, "metadata": {}}]


class CreateCustomer(Node):
    type = "stripe.CreateCustomer"
    title = "Create a Stripe customer"
    description = ("POST /v1/customers. Sent with the action's idempotency key, so a retried "
                   "or resumed action never creates a second customer.")
    connection = "stripe"
    input_schema = inputs_schema([], payment_method={
        "type": "string", "description": "A PaymentMethod id (pm_...) to attach at creation."},
        **_FIELDS)
    outputs = CUSTOMER
    example = {"type": "stripe.CreateCustomer", "connection": "stripe",
               "inputs": {"email": "{{ triggerBody().email }}",
                          "name": "{{ triggerBody().name }}",
                          "metadata": {"signup_id": "{{ triggerBody().id }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would create a Stripe customer {inputs.get('email') or inputs.get('name') or ''}".rstrip()

    async def run(self, inputs: dict, context: Any) -> Any:
        params = merge(inputs, *_NAMED, "payment_method")
        return await call(context, lambda c: c.v1.customers.create, params=params,
                          mutating=True)


class UpdateCustomer(Node):
    type = "stripe.UpdateCustomer"
    title = "Update a Stripe customer"
    description = ("POST /v1/customers/{customer}: only the given fields change; a "
                   "metadata key set to \"\" is removed.")
    connection = "stripe"
    input_schema = inputs_schema(["customer"], customer={**ID, "description": "Customer id (cus_...)."},
                          **_FIELDS)
    outputs = CUSTOMER
    example = {"type": "stripe.UpdateCustomer", "connection": "stripe",
               "inputs": {"customer": "{{ body('create').id }}",
                          "phone": "+15551234567", "metadata": {"tier": "gold"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would update Stripe customer {inputs.get('customer')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        return await call(context, lambda c: c.v1.customers.update, inputs["customer"],
                          params=merge(inputs, *_NAMED), mutating=True)


class GetCustomer(Node):
    type = "stripe.GetCustomer"
    title = "Get a Stripe customer"
    description = ("GET /v1/customers/{customer}. A deleted customer comes back as "
                   "{id, object: customer, deleted: true}; an unknown id fails with "
                   "code resource_missing.")
    connection = "stripe"
    reads_only = True
    input_schema = inputs_schema(["customer"], customer={**ID, "description": "Customer id (cus_...)."},
                          expand=EXPAND)
    outputs = CUSTOMER
    example = {"type": "stripe.GetCustomer", "connection": "stripe",
               "inputs": {"customer": "cus_NffrFeUfNV2Hib", "expand": ["default_source"]}}

    async def run(self, inputs: dict, context: Any) -> Any:
        return await call(context, lambda c: c.v1.customers.retrieve, inputs["customer"],
                          params=merge(inputs, "expand"))


class AttachPaymentMethod(Node):
    type = "stripe.AttachPaymentMethod"
    title = "Attach a payment method to a customer"
    description = (
        "POST /v1/payment_methods/{payment_method}/attach, then (unless `set_default` is "
        "false) POST /v1/customers/{customer} with invoice_settings.default_payment_method, "
        "so subscriptions and invoices charge it. The two calls use the idempotency keys "
        "`<key>` and `<key>:default` (one key may not be reused with other parameters).")
    connection = "stripe"
    input_schema = inputs_schema(
        ["payment_method", "customer"],
        payment_method={**ID, "description": "PaymentMethod id (pm_...)."},
        customer={**ID, "description": "Customer id (cus_...)."},
        set_default={"type": "boolean", "default": True,
                     "description": "Make it the customer's default for invoices and "
                                    "subscriptions."},
    )
    outputs = {"type": "object", "properties": {
        "payment_method": resource("The attached payment method."),
        "customer": {**CUSTOMER, "description": "The customer after the update (null when "
                     "set_default is false)."},
    }}
    example = {"type": "stripe.AttachPaymentMethod", "connection": "stripe",
               "inputs": {"payment_method": "{{ triggerBody().payment_method }}",
                          "customer": "{{ body('create_customer').id }}"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would attach {inputs.get('payment_method')} to {inputs.get('customer')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        pm = await call(context, lambda c: c.v1.payment_methods.attach,
                        inputs["payment_method"], params={"customer": inputs["customer"]},
                        mutating=True)
        customer = None
        if inputs.get("set_default", True):
            customer = await call(
                context, lambda c: c.v1.customers.update, inputs["customer"],
                params={"invoice_settings": {"default_payment_method": pm["id"]}},
                mutating=True, key_suffix=":default")
        return {"payment_method": pm, "customer": customer}
