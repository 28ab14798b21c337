"""Twilio: SMS/MMS, WhatsApp and voice calls through the official ``twilio`` SDK, plus
X-Twilio-Signature verification of inbound webhooks.

The SDK is imported only when a client is built or a node runs (see client.py).
"""
from .calls import GetCall, StartCall
from .client import CONNECTION
from .messages import GetMessage, SendSms, SendWhatsApp
from .webhook import TwilioSignature

CONNECTIONS = [CONNECTION]
NODES = [SendSms, SendWhatsApp, GetMessage, StartCall, GetCall]
FILTERS: dict = {}
AUTH = [TwilioSignature]
