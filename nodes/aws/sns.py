"""``aws.sns.Publish``: one message to an SNS topic (standard or FIFO)."""
from __future__ import annotations

import hashlib
from typing import Any

from engine.plugin import ActionError, Node, inputs_schema

from .client import ATTRIBUTES, attributes, body_text, call


class Publish(Node):
    type = "aws.sns.Publish"
    title = "Publish a message to an Amazon SNS topic"
    description = ("Publish to a topic ARN. A FIFO topic (`.fifo`) takes a group id and a deduplication id "
                   "(by default derived from the action's idempotency key, so an engine retry is not "
                   "delivered twice).")
    connection = "aws"
    input_schema = inputs_schema(
        ["topicArn", "message"],
        topicArn={"type": "string", "pattern": "^arn:aws[a-zA-Z-]*:sns:", "description": "The topic's ARN."},
        message={"description": "A string as is, anything else as JSON."},
        subject={"type": "string", "minLength": 1, "maxLength": 100, "description": "Email subscriptions' subject."},
        attributes=ATTRIBUTES,
        groupId={"type": "string", "minLength": 1, "maxLength": 128, "description": "FIFO topics: message group."},
        deduplicationId={"type": "string", "minLength": 1, "maxLength": 128},
    )
    outputs = {"type": "object", "properties": {
        "messageId": {"type": "string"}, "sequenceNumber": {"type": "string", "description": "FIFO topics."}}}
    example = {"type": "aws.sns.Publish", "connection": "aws",
               "inputs": {"topicArn": "arn:aws:sns:eu-west-1:123456789012:orders",
                          "message": {"orderId": "{{ triggerBody().id }}"}, "attributes": {"kind": "OrderPaid"}}}

    @classmethod
    def effect(cls, inputs: Any) -> str | None:
        return f"would publish to SNS {inputs.get('topicArn')}"

    async def run(self, inputs: dict, context: Any) -> Any:
        params: dict[str, Any] = {"TopicArn": inputs["topicArn"], "Message": body_text(inputs["message"], "message")}
        if not params["Message"]:
            raise ActionError("message is empty", code="InvalidInput")
        if inputs.get("subject"):
            params["Subject"] = inputs["subject"]
        if inputs.get("attributes"):
            params["MessageAttributes"] = attributes(inputs["attributes"])
        if inputs["topicArn"].endswith(".fifo") or inputs.get("groupId"):
            if not inputs.get("groupId"):
                raise ActionError("groupId is required for a FIFO topic", code="InvalidInput")
            params["MessageGroupId"] = inputs["groupId"]
            params["MessageDeduplicationId"] = inputs.get("deduplicationId") or hashlib.sha256(
                context.idempotency_key.encode()).hexdigest()
        got = await call(context, "sns", "publish", **params)
        return {k: v for k, v in (("messageId", got.get("MessageId")),
                                  ("sequenceNumber", got.get("SequenceNumber"))) if v}
