"""The ``kafka`` connection: settings, the client factory and the one place errors are mapped.

The SDK (``confluent_kafka``, librdkafka underneath) is imported only inside ``KafkaClient``
and ``KafkaVendor``. A connection's client is a ``KafkaClient``: the librdkafka configuration
built from the settings and secrets, one ``Producer`` per connection per process (built on
first use, polled by one background thread, flushed at exit), a Schema Registry client
when ``schema_registry_url`` is set, and a factory of consumers for the Kafka trigger.

Producer defaults (each can be changed with ``properties``): ``enable.idempotence=true``
(so ``acks=all`` and in-order, no-duplicate retries inside librdkafka), ``compression.type
=lz4``, ``linger.ms=5``. librdkafka retries a failed send by itself until
``delivery.timeout.ms``; a delivery report that still carries an error is mapped below.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

from engine.plugin import ActionError, Connection, ConnectionSpec, Fault, Rule, Vendor, secret

# librdkafka properties that hold secrets: never in `properties` (a file in git), only as
# connection secrets read from the environment.
SECRET_PROPERTIES = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password",
                               "sasl.oauthbearer.client.secret", "ssl.key.pem", "ssl_key",
                               "sasl.oauthbearer.config"})

SETTINGS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bootstrap_servers"],
    "properties": {
        "bootstrap_servers": {"type": "string", "minLength": 1,
                              "description": "host:port[,host:port...] of the brokers (bootstrap.servers)."},
        "security_protocol": {"enum": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                              "description": "security.protocol (default PLAINTEXT)."},
        "sasl_mechanism": {"enum": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"],
                           "description": "sasl.mechanism"},
        "sasl_username": {"type": "string", "description": "sasl.username"},
        "sasl_password": secret("sasl.password"),
        "ssl_ca_location": {"type": "string", "description": "ssl.ca.location: CA certificate file"},
        "ssl_certificate_location": {"type": "string", "description": "ssl.certificate.location (mutual TLS)"},
        "ssl_key_location": {"type": "string", "description": "ssl.key.location (mutual TLS)"},
        "ssl_key_password": secret("ssl.key.password"),
        "client_id": {"type": "string", "description": "client.id (default flowrun)"},
        "properties": {
            "type": "object",
            "description": "Any other librdkafka property, passed through as is (e.g. `linger.ms`, "
                           "`compression.type`, `enable.idempotence`, `message.max.bytes`). Properties holding "
                           "secrets (sasl.password, ssl.key.password ...) are refused here: use the secrets.",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "schema_registry_url": {"type": "string", "description": "Confluent Schema Registry URL (Avro and JSON "
                                                                 "Schema serialisation)."},
        "schema_registry_username": {"type": "string", "description": "Schema Registry basic-auth user (API key)"},
        "schema_registry_password": secret("Schema Registry basic-auth password (API secret)"),
    },
}

PRODUCER_DEFAULTS = {"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 5}
_LIVE: "weakref.WeakSet[KafkaClient]" = weakref.WeakSet()


def _flush_all() -> None:  # at exit: what was handed to a producer is sent, up to 10 s
    for client in list(_LIVE):
        client.close(timeout=10)


atexit.register(_flush_all)


def base_config(conn: Connection) -> dict:
    """The librdkafka configuration every client of this connection shares."""
    props = dict(conn.settings.get("properties") or {})
    refused = sorted(k for k in props if k in SECRET_PROPERTIES)
    if refused:
        raise ActionError(f"connection '{conn.name}': {', '.join(refused)} holds a secret: give it as a connection "
                          f"secret (sasl_password, ssl_key_password) read from the environment",
                          code="InvalidConnection")
    conf: dict[str, Any] = {"bootstrap.servers": conn.settings["bootstrap_servers"],
                            "client.id": conn.settings.get("client_id", "flowrun")}
    for setting, prop in (("security_protocol", "security.protocol"), ("sasl_mechanism", "sasl.mechanism"),
                          ("sasl_username", "sasl.username"), ("sasl_password", "sasl.password"),
                          ("ssl_ca_location", "ssl.ca.location"), ("ssl_key_password", "ssl.key.password"),
                          ("ssl_certificate_location", "ssl.certificate.location"),
                          ("ssl_key_location", "ssl.key.location")):
        value = conn.get(setting)
        if value is not None:
            conf[prop] = value
    conf.update(props)
    return conf


class KafkaClient:
    """What a ``kafka`` connection gives its nodes and triggers (built once per connection)."""

    def __init__(self, conn: Connection):
        self.name = conn.name
        self.config = base_config(conn)
        self.secrets = conn.secret_values()
        self._producer_conf = {**PRODUCER_DEFAULTS, **self.config}
        self._lock = threading.Lock()
        self._producer: Any = None
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()
        self._registry: Any = None
        self._registry_conf: dict | None = None
        if conn.settings.get("schema_registry_url"):
            self._registry_conf = {"url": conn.settings["schema_registry_url"]}
            user, password = conn.get("schema_registry_username"), conn.get("schema_registry_password")
            if user or password:
                self._registry_conf["basic.auth.user.info"] = f"{user or ''}:{password or ''}"
        self._serdes: dict[tuple, Any] = {}
        _LIVE.add(self)

    # -- the producer: one per connection per process ------------------------------------------
    @property
    def producer(self) -> Any:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    from confluent_kafka import Producer

                    with KAFKA.mapped_secrets(self.secrets):
                        producer = Producer(self._producer_conf)
                    self._poller = threading.Thread(target=self._poll, args=(producer,), daemon=True,
                                                    name=f"kafka-producer-{self.name}")
                    self._producer = producer
                    self._poller.start()
        return self._producer

    def _poll(self, producer: Any) -> None:
        """Serve delivery reports as they come (the nodes wait on their own messages' reports)."""
        while not self._closed.is_set():
            producer.poll(0.05)

    def close(self, timeout: float = 10) -> int:
        """Flush what was produced and stop the poller; the number of messages left unsent."""
        self._closed.set()
        producer, self._producer = self._producer, None
        if self._poller is not None:
            self._poller.join(1)
        return producer.flush(timeout) if producer is not None else 0

    # -- consumers (the Kafka trigger) ---------------------------------------------------------
    def consumer(self, conf: dict) -> Any:
        from confluent_kafka import Consumer

        with KAFKA.mapped_secrets(self.secrets):
            return Consumer({**self.config, **conf})

    # -- Schema Registry -----------------------------------------------------------------------
    @property
    def registry(self) -> Any:
        if self._registry_conf is None:
            raise ActionError(f"connection '{self.name}' has no schema_registry_url", code="NoSchemaRegistry")
        if self._registry is None:
            with self._lock:
                if self._registry is None:
                    from confluent_kafka.schema_registry import SchemaRegistryClient

                    self._registry = SchemaRegistryClient(dict(self._registry_conf))
        return self._registry

    def serializer(self, kind: str, schema: str, auto_register: bool = True) -> Any:
        """confluent-kafka's own Avro / JSON Schema serializer for ``schema`` (cached)."""
        key = ("ser", kind, schema, auto_register)
        ser = self._serdes.get(key)
        if ser is None:
            conf = {"auto.register.schemas": auto_register}
            if kind == "avro":
                from confluent_kafka.schema_registry.avro import AvroSerializer

                ser = AvroSerializer(self.registry, schema, conf=conf)
            else:
                from confluent_kafka.schema_registry.json_schema import JSONSerializer

                ser = JSONSerializer(schema, self.registry, conf=conf)
            self._serdes[key] = ser
        return ser

    def deserializer(self, kind: str) -> Any:
        """A deserializer that reads the writer's schema from the registry by the id in the message."""
        key = ("de", kind)
        de = self._serdes.get(key)
        if de is None:
            if kind == "avro":
                from confluent_kafka.schema_registry.avro import AvroDeserializer

                de = AvroDeserializer(self.registry)
            else:
                from confluent_kafka.schema_registry.json_schema import JSONDeserializer

                de = JSONDeserializer(None, schema_registry_client=self.registry)
            self._serdes[key] = de
        return de


def build_client(conn: Connection) -> KafkaClient:
    return KafkaClient(conn)


# -- errors ---------------------------------------------------------------------------------

def kafka_error(exc: BaseException) -> Any:
    """The ``KafkaError`` inside a KafkaException (or the error itself), else None."""
    from confluent_kafka import KafkaError

    if isinstance(exc, KafkaError):
        return exc
    arg = exc.args[0] if getattr(exc, "args", None) else None
    return arg if isinstance(arg, KafkaError) else None


# librdkafka codes that pass on a later attempt even when the error does not say so itself
RETRYABLE_NAMES = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_QUEUE_FULL", "_MSG_TIMED_OUT",
                             "REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                             "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION", "NOT_COORDINATOR",
                             "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS", "_WAIT_COORD",
                             "NETWORK_EXCEPTION", "THROTTLING_QUOTA_EXCEEDED", "_RESOLVE", "_NODE_UPDATE"})


def kafka_retryable(err: Any) -> bool:
    if err is None or err.fatal():
        return False
    return bool(err.retriable()) or err.name() in RETRYABLE_NAMES


class KafkaVendor(Vendor):
    """confluent-kafka: what it needs, and how its exceptions map.

    =================================  ==============  ====================================
    SDK exception                      retried?        code
    =================================  ==============  ====================================
    KafkaException (a KafkaError)      retriable [1]   librdkafka's name (``_MSG_TIMED_OUT``,
                                                       ``TOPIC_AUTHORIZATION_FAILED`` ...)
    BufferError (local queue full)     yes             ``QueueFull``
    SerializationError                 no              ``SerializationError``
    SchemaRegistryError                429/5xx         ``SchemaRegistry<error_code>``
    =================================  ==============  ====================================

    [1] ``KafkaError.retriable()``, or a transport / timeout / leader code (RETRYABLE_NAMES);
    a fatal error (``KafkaError.fatal()``: a fenced idempotent producer) never is.
    """

    name = "Kafka"
    modules = ("confluent_kafka",)
    extra = "kafka"

    def rules(self) -> list[Rule]:
        from confluent_kafka import KafkaException
        from confluent_kafka.error import SerializationError
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        def registry_retry(fault: Fault, exc: Any) -> bool:
            status = fault.status
            return status == -1 or status == 429 or (isinstance(status, int) and status >= 500)

        return [
            Rule((KafkaException,), lambda fault, exc: fault.code or "KafkaError",
                 retryable=lambda fault, exc: kafka_retryable(kafka_error(exc))),
            Rule((BufferError,), "QueueFull", retryable=True),
            Rule((SchemaRegistryError,), lambda fault, exc: f"SchemaRegistry{getattr(exc, 'error_code', '')}",
                 retryable=registry_retry),
            Rule((SerializationError,), "SerializationError"),
        ]

    def describe(self, exc: BaseException) -> Fault:
        err = kafka_error(exc)
        if err is not None:
            return Fault(message=err.str() or err.name(), code=err.name(),
                         details={"code": err.name(), "fatal": err.fatal() or None,
                                  "retriable": err.retriable() or None})
        status = getattr(exc, "http_status_code", None)
        if status is not None:
            return Fault(message=getattr(exc, "error_message", None) or str(exc), status=status,
                         details={"status": status, "error_code": getattr(exc, "error_code", None)})
        return Fault(message=str(exc) or type(exc).__name__)

    def mapped_secrets(self, secrets: list[str]) -> Any:
        """``mapped`` for code that holds the secrets but no Connection (the client's threads)."""
        holder = type("_Secrets", (), {"secret_values": lambda self: secrets})()
        return self.mapped(holder)


KAFKA = KafkaVendor()
CONNECTION = ConnectionSpec(
    kind="kafka",
    description="Apache Kafka brokers through librdkafka (confluent-kafka): bootstrap servers, SASL/SSL with "
                "secrets from the environment, any librdkafka property, and optionally a Confluent Schema "
                "Registry.",
    settings=SETTINGS,
    client=build_client,
    vendor=KAFKA,
    example={"kind": "kafka",
             "settings": {"bootstrap_servers": "broker-1:9092,broker-2:9092", "security_protocol": "SASL_SSL",
                          "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "flowrun",
                          "schema_registry_url": "https://registry.example.com"},
             "secrets": {"sasl_password": "KAFKA_PASSWORD", "schema_registry_password": "REGISTRY_SECRET"}},
)
