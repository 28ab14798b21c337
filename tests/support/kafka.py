"""librdkafka's mock cluster, started once per test session (per xdist worker), reached over TCP
by real producers and consumers, and small helpers around it.

    def test_x(kafka_cluster):
        topic = kafka_cluster.topic("orders")                     # a fresh name (auto-created, 4 partitions)
        kafka_cluster.produce(topic, [b'{"id": 1}'])
        got = kafka_cluster.read(topic, 1)                        # from the start, a throwaway group

The cluster is hosted by a librdkafka client of its own, made through librdkafka's mock API
(the same shared library confluent-kafka loaded, through ctypes), which also sets the group
coordinator's initial rebalance delay to 0 (3 s by default: every consumer group join in every
test would wait it) and creates topics with a chosen partition count. Where that API is not
there, a client created with ``test.mock.num.brokers`` hosts it and ``list_topics().brokers``
gives the host:port. Either way, real producers and consumers reach it over TCP at
``bootstrap``. Topics are also created on first use, with 4 partitions.
"""
from __future__ import annotations

import itertools
import time
import uuid
from typing import Any, Iterable

import pytest

QUIET = {"log_level": 0}  # the mock cluster's disconnect notices at teardown are noise
_names = itertools.count()


def _librdkafka() -> Any:
    import ctypes
    import glob
    import os

    import confluent_kafka

    folder = os.path.join(os.path.dirname(os.path.dirname(confluent_kafka.__file__)), "confluent_kafka.libs")
    paths = glob.glob(os.path.join(folder, "librdkafka*.so*")) or ["librdkafka.so.1"]
    lib = ctypes.CDLL(paths[0])
    p, c = ctypes.c_void_p, ctypes.c_char_p
    for name, restype, argtypes in (
            ("rd_kafka_conf_new", p, []), ("rd_kafka_conf_set", ctypes.c_int, [p, c, c, c, ctypes.c_size_t]),
            ("rd_kafka_new", p, [ctypes.c_int, p, c, ctypes.c_size_t]),
            ("rd_kafka_mock_cluster_new", p, [p, ctypes.c_int]), ("rd_kafka_mock_cluster_bootstraps", c, [p]),
            ("rd_kafka_mock_group_initial_rebalance_delay_ms", None, [p, ctypes.c_int32]),
            ("rd_kafka_mock_topic_create", ctypes.c_int, [p, c, ctypes.c_int, ctypes.c_int])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class MockCluster:
    def __init__(self, brokers: int = 3):
        import ctypes

        self._mock = None
        try:
            lib = _librdkafka()
        except (OSError, AttributeError):
            lib = None
        if lib is not None:
            err = ctypes.create_string_buffer(512)
            conf = lib.rd_kafka_conf_new()
            lib.rd_kafka_conf_set(conf, b"log_level", b"0", err, 512)
            self._rk = lib.rd_kafka_new(0, conf, err, 512)  # a producer handle that hosts the cluster
            self._mock = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
            self._lib = lib
            self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self._mock).decode()
            lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._mock, 0)
            return
        from confluent_kafka import Producer

        self._host = Producer({"test.mock.num.brokers": brokers, **QUIET})
        metadata = self._host.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())

    def create_topic(self, name: str, partitions: int) -> str:
        if self._mock is not None:
            assert self._lib.rd_kafka_mock_topic_create(self._mock, name.encode(), partitions, 1) == 0
        else:
            self.ensure(name)
        return name

    def topic(self, prefix: str = "t") -> str:
        return f"{prefix}-{next(_names)}-{uuid.uuid4().hex[:6]}"

    def connection(self, **settings: Any) -> dict:
        """A `kafka` connection entry for connections.yaml pointing at this cluster."""
        props = {**QUIET, **settings.pop("properties", {})}
        return {"kind": "kafka", "settings": {"bootstrap_servers": self.bootstrap, "properties": props, **settings}}

    def produce(self, topic: str, values: Iterable[bytes | None], *, key: bytes | None = None,
                headers: list | None = None, partition: int | None = None) -> int:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2, **QUIET})
        n = 0
        for value in values:
            kw: dict = {"key": key, "headers": headers}
            if partition is not None:
                kw["partition"] = partition
            while True:
                try:
                    producer.produce(topic, value, **kw)
                    break
                except BufferError:
                    producer.poll(0.01)
            n += 1
        left = producer.flush(30)
        assert left == 0, f"{left} messages not delivered to the mock cluster"
        return n

    def ensure(self, topic: str) -> None:
        """Create ``topic`` (by asking for its metadata) so a pattern subscription can match it."""
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "meta", "allow.auto.create.topics": True,
                      **QUIET})
        try:
            c.list_topics(topic, timeout=10)
        finally:
            c.close()

    def read(self, topic: str, n: int, timeout: float = 30) -> list[Any]:
        """The first ``n`` messages of ``topic`` (every partition, from the start; no group)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                      "enable.auto.commit": False, **QUIET})
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        got: list = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < n and time.monotonic() < deadline:
                got += [m for m in c.consume(n - len(got), 0.1) if m.error() is None]
        finally:
            c.close()
        assert len(got) >= n, f"only {len(got)} of {n} messages in {topic}"
        return got

    def committed(self, group: str, topic: str, partitions: int = 4) -> dict[int, int]:
        """The group's committed offset per partition (-1001: none)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, **QUIET})
        try:
            got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        finally:
            c.close()
        return {tp.partition: tp.offset for tp in got}


@pytest.fixture(scope="session")
def kafka_cluster() -> MockCluster:
    pytest.importorskip("confluent_kafka")
    return MockCluster()
