"""Apache Kafka through confluent-kafka (librdkafka): the ``kafka`` connection (SASL/SSL, any
librdkafka property, an optional Schema Registry), ``kafka.Produce`` (idempotent, batched,
delivery reports) and the ``kafka.Consume`` pull trigger (a consumer group; offsets committed
only after the runs; dead-letter topic).

The SDK is imported lazily (client factory, error table, trigger start); importing this
module does not import it.
"""
from __future__ import annotations

from .client import CONNECTION, KAFKA, KafkaClient
from .consume import Consume
from .produce import Produce

CONNECTIONS = [CONNECTION]
NODES = [Produce]
TRIGGERS = [Consume]
FILTERS: dict = {}

__all__ = ["CONNECTIONS", "NODES", "TRIGGERS", "FILTERS", "KAFKA", "KafkaClient", "Consume", "Produce"]
