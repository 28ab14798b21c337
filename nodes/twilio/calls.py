"""Voice calls: start one, and fetch a call's status."""
from __future__ import annotations

from typing import Any

from engine.plugin import ActionError, Node, inputs_schema

from .client import call
from .schemas import CALL, CALLBACK_URL, PHONE

CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


class StartCall(Node):
    type = "twilio.StartCall"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Start an outbound Twilio voice call"
    description = (
        "POST /2010-04-01/Accounts/{AccountSid}/Calls.json. Say what happens on the call "
        "with exactly one of `twiml` (inline TwiML), `url` (Twilio fetches TwiML from it) or "
        "`applicationSid`. The output is the Call resource (sid, status: queued, ...); follow "
        "progress with `statusCallback` + `statusCallbackEvent` or twilio.GetCall.")
    connection = "twilio"
    input_schema = inputs_schema(
        ["to", "from"],
        to={**PHONE, "description": "Number to call (E.164), or a SIP/client address. "
            "Quote numbers in YAML."},
        **{"from": {**PHONE, "description": "Caller ID: a Twilio number or verified caller "
                    "ID in E.164 form."}},
        twiml={"type": "string", "minLength": 1, "description": "TwiML to run, e.g. "
               "<Response><Say>Hello</Say></Response>."},
        url={"type": "string", "minLength": 1, "description": "URL that returns the TwiML."},
        applicationSid={"type": "string", "pattern": "^AP",
                        "description": "TwiML App SID (AP...) whose voice URL runs the call."},
        method={"enum": ["GET", "POST"], "description": "HTTP method for `url` (POST)."},
        statusCallback=CALLBACK_URL,
        statusCallbackEvent={"type": "array", "items": {"enum": CALL_EVENTS},
                             "uniqueItems": True,
                             "description": "Which progress events to send to "
                                            "statusCallback (default: completed)."},
        statusCallbackMethod={"enum": ["GET", "POST"],
                              "description": "HTTP method for statusCallback (POST)."},
        timeout={"type": "integer", "minimum": 5, "maximum": 600,
                 "description": "Seconds to let it ring before giving up (60)."},
        timeLimit={"type": "integer", "minimum": 1,
                   "description": "Maximum call length in seconds (4 hours)."},
        record={"type": "boolean", "description": "Record the call."},
        machineDetection={"enum": ["Enable", "DetectMessageEnd"],
                          "description": "Answering machine detection; the result is in "
                                         "answered_by."},
        sendDigits={"type": "string", "pattern": "^[0-9#*wW]+$",
                    "description": "DTMF digits to play once connected (w = half-second "
                                   "pause)."},
    )
    outputs = CALL
    example = {"type": "twilio.StartCall", "connection": "twilio",
               "inputs": {"to": "{{ triggerBody().phone }}", "from": "+15017122661",
                          "twiml": "<Response><Say>Your code is {{ triggerBody().code }}"
                                   "</Say></Response>",
                          "statusCallback": "https://example.com/hooks/call-status",
                          "statusCallbackEvent": ["answered", "completed"]}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would call {inputs.get('to')} from {inputs.get('from')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        given = [k for k in ("twiml", "url", "applicationSid") if inputs.get(k)]
        if len(given) != 1:
            raise ActionError("twilio.StartCall: give exactly one of `twiml`, `url` or "
                              f"`applicationSid` (got {', '.join(given) or 'none'})",
                              code="InvalidInputs")
        names = {"to": "to", "from": "from_", "twiml": "twiml", "url": "url",
                 "applicationSid": "application_sid", "method": "method",
                 "statusCallback": "status_callback",
                 "statusCallbackEvent": "status_callback_event",
                 "statusCallbackMethod": "status_callback_method", "timeout": "timeout",
                 "timeLimit": "time_limit", "record": "record",
                 "machineDetection": "machine_detection", "sendDigits": "send_digits"}
        kwargs = {names[k]: v for k, v in inputs.items() if v is not None}
        return await call(context, lambda c: c.calls.create(**kwargs))


class GetCall(Node):
    type = "twilio.GetCall"
    title = "Get a Twilio call's status"
    description = ("GET /2010-04-01/Accounts/{AccountSid}/Calls/{sid}.json: the call's "
                   "current status, duration, price and answered_by.")
    connection = "twilio"
    reads_only = True
    input_schema = inputs_schema(["sid"], sid={"type": "string", "pattern": "^CA",
                                        "description": "Call SID (CA...)."})
    outputs = CALL
    example = {"type": "twilio.GetCall", "connection": "twilio",
               "inputs": {"sid": "{{ body('call').sid }}"}}

    async def run(self, inputs: dict, context: Any) -> Any:
        sid = inputs["sid"]
        return await call(context, lambda c: c.calls(sid).fetch())
