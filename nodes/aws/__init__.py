"""AWS (boto3): EventBridge PutEvents, SQS SendMessage, SNS Publish, Kinesis PutRecords, and
two pull triggers for ``flowrun serve``: an SQS queue and a Kinesis stream.

boto3 is imported lazily (client factory, error table); importing this module does not import it.
"""
from __future__ import annotations

from .client import AWS, CONNECTION
from .eventbridge import PutEvents
from .kinesis import PutRecords
from .kinesis_trigger import KinesisStream
from .sns import Publish
from .sqs import SendMessage
from .sqs_trigger import SqsQueue

CONNECTIONS = [CONNECTION]
NODES = [PutEvents, SendMessage, Publish, PutRecords]
TRIGGERS = [SqsQueue, KinesisStream]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "TRIGGERS", "FILTERS", "AWS"]
