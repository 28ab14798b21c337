"""JSON Schema fragments shared by the Twilio nodes."""
from __future__ import annotations

PHONE = {"type": "string", "minLength": 1,
         "description": "Phone number in E.164 form, e.g. \"+15551234567\" (quote it in YAML: "
                        "an unquoted +1555... is read as a number and loses its '+')."}

CALLBACK_URL = {"type": "string", "minLength": 1,
                "description": "URL Twilio POSTs status changes to (queued, sent, delivered, "
                               "failed, ... for messages; initiated, ringing, answered, "
                               "completed for calls)."}

MEDIA_URLS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 10,
              "description": "Public URLs of media to attach (MMS / WhatsApp media), up to "
                             "10; sent as repeated MediaUrl parameters."}

MESSAGING_SERVICE = {"type": "string", "pattern": "^MG",
                     "description": "Messaging Service SID (MG...): Twilio picks the sender "
                                    "from the service's pool when `from` is left out."}


def _prop(kind: str | list[str], description: str) -> dict:
    return {"type": kind, "description": description}


MESSAGE = {
    "type": "object",
    "description": "The Message resource, exactly as Twilio's API returned it (JSON, "
                   "snake_case keys, RFC 2822 dates).",
    "properties": {
        "sid": _prop("string", "Message SID (SM... / MM...)."),
        "status": _prop("string", "queued, accepted, scheduled, sending, sent, delivered, "
                                  "undelivered, failed, read, received, canceled."),
        "to": _prop("string", "Recipient (E.164 or channel address such as whatsapp:+1...)."),
        "from": _prop(["string", "null"], "Sender (null until a Messaging Service assigns one)."),
        "body": _prop(["string", "null"], "Text of the message."),
        "num_segments": _prop(["string", "null"], "Number of SMS segments billed."),
        "num_media": _prop(["string", "null"], "Number of media attached."),
        "direction": _prop("string", "outbound-api, inbound, outbound-call, outbound-reply."),
        "price": _prop(["string", "null"], "Amount billed (negative), once known."),
        "price_unit": _prop(["string", "null"], "Currency of price, e.g. USD."),
        "error_code": _prop(["integer", "null"], "Twilio error code when failed/undelivered."),
        "error_message": _prop(["string", "null"], "Description of error_code."),
        "messaging_service_sid": _prop(["string", "null"], "Messaging Service used (MG...)."),
        "account_sid": _prop("string", "Account that sent the message."),
        "date_created": _prop(["string", "null"], "When the resource was created."),
        "date_sent": _prop(["string", "null"], "When Twilio sent the message."),
        "date_updated": _prop(["string", "null"], "When the resource last changed."),
        "uri": _prop("string", "URI of the resource, relative to https://api.twilio.com."),
    },
}

MESSAGE["examples"] = [{"sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "status": "queued", "to": "+15558675310",
                        "from": "+15017122661", "body": "Your order has shipped.", "num_segments": "1",
                        "num_media": "0", "direction": "outbound-api", "price": None, "price_unit": "USD",
                        "error_code": None, "error_message": None, "messaging_service_sid": None,
                        "account_sid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "date_created": None,
                        "date_sent": None, "date_updated": None,
                        "uri": "/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages/"
                               "SM1f0e8ae6ade43cb3c0ce4525424e404f.json"}]

CALL = {
    "type": "object",
    "description": "The Call resource, exactly as Twilio's API returned it (JSON, snake_case "
                   "keys, RFC 2822 dates).",
    "properties": {
        "sid": _prop("string", "Call SID (CA...)."),
        "status": _prop("string", "queued, ringing, in-progress, completed, busy, failed, "
                                  "no-answer, canceled."),
        "to": _prop("string", "Called number, SIP address or client identifier."),
        "from": _prop("string", "Caller ID."),
        "direction": _prop("string", "outbound-api, inbound, outbound-dial."),
        "duration": _prop(["string", "null"], "Seconds, once the call has ended."),
        "price": _prop(["string", "null"], "Amount billed (negative), once known."),
        "price_unit": _prop(["string", "null"], "Currency of price, e.g. USD."),
        "answered_by": _prop(["string", "null"], "human, machine_start, fax, ... when "
                                                 "machine detection was requested."),
        "start_time": _prop(["string", "null"], "When the call was answered/started."),
        "end_time": _prop(["string", "null"], "When the call ended."),
        "parent_call_sid": _prop(["string", "null"], "Call that created this one (<Dial>)."),
        "account_sid": _prop("string", "Account that made the call."),
        "date_created": _prop(["string", "null"], "When the resource was created."),
        "uri": _prop("string", "URI of the resource, relative to https://api.twilio.com."),
    },
}
