"""Messages: SMS/MMS, WhatsApp, and fetching a message's status."""
from __future__ import annotations

import json
from typing import Any

from engine.plugin import ActionError, Node, compact, inputs_schema

from .client import call
from .schemas import CALLBACK_URL, MEDIA_URLS, MESSAGE, MESSAGING_SERVICE, PHONE

WHATSAPP = "whatsapp:"


def _invalid(message: str) -> ActionError:
    return ActionError(message, code="InvalidInputs")


def _sender(inputs_: dict, channel: str) -> dict:
    if not inputs_.get("from") and not inputs_.get("messagingServiceSid"):
        raise _invalid(f"{channel}: give `from` (a Twilio sender) or `messagingServiceSid`")
    return {"from_": inputs_.get("from"),
            "messaging_service_sid": inputs_.get("messagingServiceSid")}


def _common(inputs_: dict) -> dict:
    return {"body": inputs_.get("body"), "media_url": inputs_.get("mediaUrl"),
            "status_callback": inputs_.get("statusCallback")}


def whatsapp_address(value: str) -> str:
    """``+15551234567`` → ``whatsapp:+15551234567``; an address already prefixed is kept."""
    value = value.strip()
    return value if value.lower().startswith(WHATSAPP) else WHATSAPP + value


class SendSms(Node):
    type = "twilio.SendSms"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Send an SMS/MMS with Twilio"
    description = (
        "POST /2010-04-01/Accounts/{AccountSid}/Messages.json. Needs `from` or "
        "`messagingServiceSid`, and `body` or `mediaUrl` (media makes it an MMS). The output "
        "is the Message resource (sid, status, price, error_code, ...); delivery happens "
        "later: follow it with `statusCallback` or twilio.GetMessage. Twilio has no "
        "idempotency key for messages, so a retried 5xx/timeout may send twice.")
    connection = "twilio"
    input_schema = inputs_schema(
        ["to"],
        to={**PHONE, "description": "Recipient. " + PHONE["description"]},
        **{"from": {**PHONE, "description": "Sender: a Twilio number in E.164 form, a short "
                    "code or an alphanumeric sender ID. Quote numbers in YAML."}},
        messagingServiceSid=MESSAGING_SERVICE,
        body={"type": "string", "maxLength": 1600, "description": "Text, up to 1600 "
              "characters (longer than 160 GSM-7 / 70 UCS-2 characters is billed as several "
              "segments)."},
        mediaUrl=MEDIA_URLS,
        statusCallback=CALLBACK_URL,
        sendAt={"type": "string", "description": "Schedule the message (ISO 8601, 15 minutes "
                "to 35 days ahead); needs messagingServiceSid."},
        validityPeriod={"type": "integer", "minimum": 1, "maximum": 36000,
                        "description": "Seconds the message may wait in Twilio's queue "
                                       "before it is dropped."},
    )
    outputs = MESSAGE
    example = {"type": "twilio.SendSms", "connection": "twilio",
               "inputs": {"to": "{{ triggerBody().phone }}", "from": "+15017122661",
                          "body": "Your order {{ triggerBody().order_id }} has shipped.",
                          "statusCallback": "https://example.com/hooks/twilio-status"},
               "retryPolicy": {"type": "exponential", "count": 3, "interval": "PT5S"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would send SMS to {inputs.get('to')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        if not inputs.get("body") and not inputs.get("mediaUrl"):
            raise _invalid("twilio.SendSms: give `body`, `mediaUrl`, or both")
        if inputs.get("sendAt") and not inputs.get("messagingServiceSid"):
            raise _invalid("twilio.SendSms: `sendAt` needs `messagingServiceSid` "
                           "(Twilio schedules only messages sent through a Messaging Service)")
        kwargs = compact({"to": inputs["to"], **_sender(inputs, self.type), **_common(inputs),
                         "send_at": inputs.get("sendAt"),
                         "schedule_type": "fixed" if inputs.get("sendAt") else None,
                         "validity_period": inputs.get("validityPeriod")})
        return await call(context, lambda c: c.messages.create(**kwargs))


class SendWhatsApp(Node):
    type = "twilio.SendWhatsApp"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Send a WhatsApp message with Twilio"
    description = (
        "POST /2010-04-01/Accounts/{AccountSid}/Messages.json on the WhatsApp channel. `to` "
        "and `from` may be plain E.164 numbers: the `whatsapp:` prefix is added. Outside the "
        "24-hour session window WhatsApp accepts only approved templates: send `contentSid` "
        "(HX...) with `contentVariables`; inside it, `body` and/or `mediaUrl`.")
    connection = "twilio"
    input_schema = inputs_schema(
        ["to"],
        to={"type": "string", "minLength": 1, "description": "Recipient: \"+15551234567\" "
            "or \"whatsapp:+15551234567\"."},
        **{"from": {"type": "string", "minLength": 1, "description": "Your WhatsApp sender: "
                    "\"+14155238886\" or \"whatsapp:+14155238886\"."}},
        messagingServiceSid=MESSAGING_SERVICE,
        body={"type": "string", "maxLength": 1600, "description": "Free-form text (only "
              "inside the 24-hour customer service window)."},
        mediaUrl=MEDIA_URLS,
        contentSid={"type": "string", "pattern": "^HX", "description": "Content template "
                    "SID (HX...), e.g. an approved WhatsApp template."},
        contentVariables={"type": "object",
                          "additionalProperties": {"type": ["string", "number", "boolean"]},
                          "description": "Template placeholders, e.g. {\"1\": \"Ana\", \"2\": "
                                         "\"12/1\"}; values are sent as strings (JSON)."},
        statusCallback=CALLBACK_URL,
    )
    outputs = MESSAGE
    example = {"type": "twilio.SendWhatsApp", "connection": "twilio",
               "inputs": {"to": "{{ triggerBody().phone }}", "from": "+14155238886",
                          "contentSid": "HXb5b62575e6e4ff6129ad7c8efe1f983e",
                          "contentVariables": {"1": "{{ triggerBody().name }}",
                                               "2": "{{ triggerBody().date }}"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would send a WhatsApp message to {inputs.get('to')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        if not (inputs.get("body") or inputs.get("mediaUrl") or inputs.get("contentSid")):
            raise _invalid("twilio.SendWhatsApp: give `contentSid` (a template), or `body` "
                           "and/or `mediaUrl`")
        if inputs.get("contentVariables") and not inputs.get("contentSid"):
            raise _invalid("twilio.SendWhatsApp: `contentVariables` needs `contentSid`")
        sender = _sender(inputs, self.type)
        if sender["from_"]:
            sender["from_"] = whatsapp_address(sender["from_"])
        variables = inputs.get("contentVariables")
        kwargs = compact({
            "to": whatsapp_address(inputs["to"]), **sender, **_common(inputs),
            "content_sid": inputs.get("contentSid"),
            "content_variables": json.dumps({str(k): v if isinstance(v, str) else json.dumps(v)
                                             for k, v in variables.items()})
            if variables else None,
        })
        return await call(context, lambda c: c.messages.create(**kwargs))


class GetMessage(Node):
    type = "twilio.GetMessage"
    title = "Get a Twilio message's status"
    description = ("GET /2010-04-01/Accounts/{AccountSid}/Messages/{sid}.json: the message's "
                   "current status, price and error_code (e.g. to check delivery after "
                   "twilio.SendSms).")
    connection = "twilio"
    reads_only = True
    input_schema = inputs_schema(["sid"], sid={"type": "string", "pattern": "^(SM|MM)",
                                        "description": "Message SID (SM... or MM...)."})
    outputs = MESSAGE
    example = {"type": "twilio.GetMessage", "connection": "twilio",
               "inputs": {"sid": "{{ body('send').sid }}"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        sid = inputs["sid"]
        return await call(context, lambda c: c.messages(sid).fetch())
