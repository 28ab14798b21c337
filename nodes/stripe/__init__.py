"""Stripe: customers, payment methods, PaymentIntents, refunds, subscriptions, invoices,
a generic request node, and Stripe-Signature verification for inbound webhooks.

The ``stripe`` SDK is imported lazily (client factory, error mapping, webhook
verification); importing this module does not import it.
"""
from __future__ import annotations

from .billing import CancelSubscription, CreateSubscription, GetInvoice
from .client import CONNECTION, map_errors
from .customers import AttachPaymentMethod, CreateCustomer, GetCustomer, UpdateCustomer
from .payments import (CapturePaymentIntent, ConfirmPaymentIntent, CreatePaymentIntent,
                       CreateRefund)
from .request import Request
from .webhook import IgnoredEvent, StripeWebhookAuth

CONNECTIONS = [CONNECTION]
NODES = [CreateCustomer, UpdateCustomer, GetCustomer, AttachPaymentMethod,
         CreatePaymentIntent, ConfirmPaymentIntent, CapturePaymentIntent, CreateRefund,
         CreateSubscription, CancelSubscription, GetInvoice, Request]
FILTERS: dict = {}
AUTH = [StripeWebhookAuth]

__all__ = ["CONNECTIONS", "NODES", "FILTERS", "AUTH", "map_errors", "IgnoredEvent"]
