"""Mail Send: POST /v3/mail/send."""
from __future__ import annotations

import base64
import binascii
import json
from email.utils import parseaddr
from typing import Any

from engine.plugin import ActionError, Node, compact, trace_headers

from .client import SENDGRID, request_client

_ADDRESS_OBJECT = {"type": "object", "additionalProperties": False, "required": ["email"],
                   "properties": {"email": {"type": "string", "minLength": 3},
                                  "name": {"type": "string"}}}
ADDRESS = {"anyOf": [{"type": "string", "minLength": 3}, _ADDRESS_OBJECT],
           "description": "\"ana@example.com\", \"Ana Lima <ana@example.com>\" or "
                          "{email: ana@example.com, name: Ana Lima}."}
ADDRESSES = {"anyOf": [{"type": "array", "items": ADDRESS, "minItems": 1, "maxItems": 1000},
                       ADDRESS],
             "description": "One address or a list; each \"ana@example.com\", \"Ana Lima "
                            "<ana@example.com>\" or {email, name}."}

FILE_REF = {"type": "object", "required": ["$file"],
            "properties": {"$file": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "name": {"type": "string"}, "contentType": {"type": "string"},
                           "size": {"type": "integer"}},
            "description": "A file an earlier action kept in the blob store (e.g. "
                           "`{{ outputs('export').file }}` of tableau.ExportView)."}
ATTACHMENT = {
    "type": "object", "additionalProperties": False,
    "oneOf": [{"required": ["content", "filename"]}, {"required": ["file"]}],
    "properties": {
        "content": {"type": "string", "minLength": 1,
                    "description": "The file, Base64-encoded (or give `file`)."},
        "file": {**FILE_REF, "description": "A blob-store file reference instead of `content`; its "
                                            "name and type are the defaults of `filename` and `type`."},
        "filename": {"type": "string", "minLength": 1, "description": "File name shown."},
        "type": {"type": "string", "description": "MIME type, e.g. application/pdf."},
        "disposition": {"enum": ["attachment", "inline"],
                        "description": "attachment (default) or inline (with contentId)."},
        "contentId": {"type": "string",
                      "description": "Content-ID of an inline attachment (<img src=\"cid:...\">)."},
    },
}

INPUTS = {
    "type": "object", "additionalProperties": False, "required": ["to", "from"],
    "properties": {
        "to": {**ADDRESSES, "description": "Recipients. " + ADDRESSES["description"]},
        "cc": {**ADDRESSES, "description": "Carbon-copy recipients."},
        "bcc": {**ADDRESSES, "description": "Blind carbon-copy recipients."},
        "from": {**ADDRESS, "description": "Sender (a verified sender or domain). "
                 + ADDRESS["description"]},
        "replyTo": {**ADDRESS, "description": "Where replies go."},
        "subject": {"type": "string", "minLength": 1,
                    "description": "Subject line (optional with a template that sets one)."},
        "text": {"type": "string", "minLength": 1, "description": "Plain-text body."},
        "html": {"type": "string", "minLength": 1, "description": "HTML body."},
        "templateId": {"type": "string", "pattern": "^d-",
                       "description": "Dynamic template id (d-...)."},
        "dynamicTemplateData": {"type": "object",
                                "description": "Handlebars data for the dynamic template."},
        "attachments": {"type": "array", "items": ATTACHMENT, "description": "Files to attach."},
        "categories": {"type": "array", "maxItems": 10, "uniqueItems": True,
                       "items": {"type": "string", "minLength": 1, "maxLength": 255},
                       "description": "Up to 10 categories for statistics."},
        "customArgs": {"type": "object",
                       "additionalProperties": {"type": ["string", "number", "boolean"]},
                       "description": "Values echoed in Event Webhook events (sent as "
                                      "strings)."},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Extra email headers, e.g. {X-Order-Id: \"1042\"}."},
        "sendAt": {"type": "integer", "minimum": 0,
                   "description": "Unix timestamp to deliver at (up to 72 hours ahead)."},
        "asmGroupId": {"type": "integer", "minimum": 1,
                       "description": "Unsubscribe group id (Advanced Suppression Manager)."},
        "asmGroupsToDisplay": {"type": "array", "items": {"type": "integer"}, "maxItems": 25,
                               "description": "Unsubscribe groups shown on the preferences "
                                              "page (needs asmGroupId)."},
        "sandboxMode": {"type": "boolean",
                        "description": "Validate the request without delivering it."},
    },
}


def _invalid(message: str) -> ActionError:
    return ActionError(f"sendgrid.SendEmail: {message}", code="InvalidInputs")


def address(value: Any, field: str) -> dict:
    """A v3 email object from "a@b.c", "Name <a@b.c>" or {email, name}."""
    if isinstance(value, dict):
        name, mail = value.get("name") or "", str(value.get("email") or "").strip()
    else:
        name, mail = parseaddr(str(value)) if "<" in str(value) else ("", str(value).strip())
    if "@" not in mail or " " in mail:
        raise _invalid(f"`{field}`: {value!r} is not an email address")
    return {"email": mail, "name": name} if name else {"email": mail}


def addresses(value: Any, field: str) -> list[dict]:
    items = value if isinstance(value, list) else [value]
    return [address(v, f"{field}[{i}]" if isinstance(value, list) else field)
            for i, v in enumerate(items)]


def _attachment(item: dict, i: int, read_file: Any = None) -> dict:
    if "file" in item:  # a blob-store reference: the bytes are read only now, at send time
        ref = item["file"]
        item = {**item, "content": base64.b64encode(read_file(ref)).decode("ascii"),
                "filename": item.get("filename") or ref.get("name") or "attachment",
                "type": item.get("type") or ref.get("contentType")}
    content = "".join(item["content"].split())
    try:
        base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"`attachments[{i}].content` ({item['filename']}) is not "
                       "Base64") from None
    out = {"content": content, "filename": item["filename"], "type": item.get("type"),
           "disposition": item.get("disposition"), "content_id": item.get("contentId")}
    return compact(out)


def mail_body(inputs: dict, read_file: Any = None) -> dict:
    """The v3 /mail/send JSON for the node's inputs (one personalization)."""
    if not inputs.get("templateId"):
        if not (inputs.get("text") or inputs.get("html")):
            raise _invalid("give `text` and/or `html`, or a `templateId`")
        if not inputs.get("subject"):
            raise _invalid("give a `subject` (only a `templateId` may supply its own)")
    if inputs.get("dynamicTemplateData") and not inputs.get("templateId"):
        raise _invalid("`dynamicTemplateData` needs `templateId`")
    if inputs.get("asmGroupsToDisplay") and not inputs.get("asmGroupId"):
        raise _invalid("`asmGroupsToDisplay` needs `asmGroupId`")

    personalization: dict[str, Any] = {"to": addresses(inputs["to"], "to")}
    for key in ("cc", "bcc"):
        if inputs.get(key):
            personalization[key] = addresses(inputs[key], key)
    if inputs.get("dynamicTemplateData"):
        personalization["dynamic_template_data"] = inputs["dynamicTemplateData"]

    body: dict[str, Any] = {"personalizations": [personalization],
                            "from": address(inputs["from"], "from")}
    if inputs.get("replyTo"):
        body["reply_to"] = address(inputs["replyTo"], "replyTo")
    if inputs.get("subject"):
        body["subject"] = inputs["subject"]
    content = [{"type": mime, "value": inputs[key]}
               for key, mime in (("text", "text/plain"), ("html", "text/html"))
               if inputs.get(key)]  # text/plain must come first
    if content:
        body["content"] = content
    if inputs.get("templateId"):
        body["template_id"] = inputs["templateId"]
    if inputs.get("attachments"):
        body["attachments"] = [_attachment(a, i, read_file) for i, a in enumerate(inputs["attachments"])]
    if inputs.get("categories"):
        body["categories"] = list(inputs["categories"])
    if inputs.get("customArgs"):
        body["custom_args"] = {str(k): v if isinstance(v, str) else json.dumps(v)
                               for k, v in inputs["customArgs"].items()}
    if inputs.get("headers"):
        body["headers"] = dict(inputs["headers"])
    if inputs.get("sendAt") is not None:
        body["send_at"] = int(inputs["sendAt"])
    if inputs.get("asmGroupId"):
        body["asm"] = {"group_id": int(inputs["asmGroupId"])}
        if inputs.get("asmGroupsToDisplay"):
            body["asm"]["groups_to_display"] = list(inputs["asmGroupsToDisplay"])
    if inputs.get("sandboxMode"):
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body


def _send(client: Any, body: dict, headers: dict[str, str]) -> dict:
    response = request_client(client, headers).mail.send.post(request_body=body)  # SendGridAPIClient.send's call
    headers = response.headers
    return {"statusCode": response.status_code,
            "messageId": headers.get("X-Message-Id") if headers is not None else None}


def _recipients(to: Any) -> str:
    """The ``to`` of an effect line: an address, or each address of a list (name <email> kept as given)."""
    items = to if isinstance(to, list) else [to]
    shown = [str(t.get("email") if isinstance(t, dict) else t) for t in items[:3]]
    return ", ".join(shown) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


class SendEmail(Node):
    type = "sendgrid.SendEmail"
    idempotent = False  # the vendor takes no idempotency key: a retry after a crash may repeat it
    title = "Send an email with SendGrid"
    description = (
        "POST /v3/mail/send with one personalization: `to`, `cc` and `bcc` see the same "
        "message. Give `subject` with `text` and/or `html`, or a dynamic `templateId` with "
        "`dynamicTemplateData`. SendGrid answers 202 Accepted with an X-Message-Id; delivery "
        "happens later (Event Webhook). SendGrid's errors name the field and the reason; "
        "429 and 5xx are retried by the action's retryPolicy, other 4xx are not. Mail Send "
        "has no idempotency key, so a retried 5xx/timeout may deliver twice.")
    connection = "sendgrid"
    input_schema = INPUTS
    outputs = {
        "type": "object",
        "properties": {
            "statusCode": {"type": "integer",
                           "description": "HTTP status SendGrid answered (202 Accepted; 200 "
                                          "in sandbox mode)."},
            "messageId": {"type": ["string", "null"],
                          "description": "X-Message-Id: the prefix of sg_message_id in Event "
                                         "Webhook events and the Email Activity API."},
        },
    }
    example = {"type": "sendgrid.SendEmail", "connection": "sendgrid",
               "inputs": {"to": "{{ triggerBody().customer.email }}",
                          "from": "Acme Orders <orders@acme.example>",
                          "templateId": "d-13b8f94fbcae4ec6b75270d6cb59f932",
                          "dynamicTemplateData": {"order": "{{ triggerBody().order }}"},
                          "categories": ["order-confirmation"],
                          "customArgs": {"order_id": "{{ triggerBody().order.id }}"}},
               "retryPolicy": {"type": "exponential", "count": 4, "interval": "PT10S"}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would email {_recipients(inputs.get('to'))}" + (f" '{inputs['subject']}'" if inputs.get("subject") else "")

    async def run(self, inputs: dict, context: Any) -> Any:
        body = mail_body(inputs, context.read_file)
        client = await SENDGRID.client(context)
        trace = trace_headers({})  # the attempt's span's traceparent, when tracing (engine.telemetry)
        return await SENDGRID.call(context, _send, client, body, trace)
