"""Twilio SendGrid: transactional email through the official ``sendgrid`` SDK (v3 Mail Send).

The SDK is imported only when a client is built or a node runs (see client.py).
"""
from .client import CONNECTION
from .mail import SendEmail

CONNECTIONS = [CONNECTION]
NODES = [SendEmail]
FILTERS: dict = {}
AUTH: list = []
