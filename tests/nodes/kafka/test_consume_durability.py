"""kafka.Consume in real `flowrun serve` processes: a consumer-group rebalance between two servers
(offsets committed on revocation: no message lost, none read twice) and a kill -9 while
consuming, then a restart: exactly one run per message."""
from __future__ import annotations

import json
import re
import threading
import time

import yaml

from tests.listener.conftest import Server, write_flows
from tests.support.waiting import wait_until

FLOW = """\
name: stream
triggers:
  orders:
    type: kafka.Consume
    connection: kafka
    topics: [{topic}]
    groupId: {group}
    properties: {properties}
actions:
  a: {{type: Compose, inputs: "{{{{ triggerBody().id }}}}"}}
  b: {{type: Compose, runAfter: {{a: [Succeeded]}}, inputs: "{{{{ outputs('a') }}}}"}}
outputs:
  id: {{value: "{{{{ outputs('b') }}}}"}}
"""


CLASSIC = "{session.timeout.ms: 2000, heartbeat.interval.ms: 200}"  # a killed member leaves the group soon
# KIP-848's consumer protocol. With the classic protocol a real broker takes the offset commit made
# in the revocation callback (PreparingRebalance accepts commits), but the mock cluster's classic
# coordinator refuses every OffsetCommit while the group is joining (REBALANCE_IN_PROGRESS); its
# KIP-848 coordinator takes them, as brokers do.
KIP848 = "{group.protocol: consumer}"


def folder(tmp_path, cluster, topic: str, group: str, properties: str = CLASSIC):
    conns = yaml.safe_dump({"connections": {"kafka": cluster.connection()}})
    text = FLOW.format(topic=topic, group=group, properties=properties)
    return write_flows(tmp_path / "flows", {"stream.yaml": text}, connections=conns)


def runs(server: Server) -> list[dict]:
    return server.runs("stream")


def all_done(server: Server, n: int) -> bool:
    rs = runs(server)
    return len(rs) >= n and all(r["status"] == "Succeeded" for r in rs)


def metric(server: Server, name: str, outcome: str | None = None) -> float:
    with server.client() as c:
        text = c.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and (outcome is None or f'outcome="{outcome}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_rebalance_between_two_servers_commits_offsets_on_revocation_and_loses_or_repeats_nothing(
        tmp_path, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("rebalance"), 4)
    flows = folder(tmp_path, kafka_cluster, topic, f"g-{topic}", KIP848)
    state = tmp_path / "state.db"
    produced, stop = [0], threading.Event()

    def feed() -> None:  # a steady stream to every partition, until the group has changed
        while not stop.is_set():
            start = produced[0]
            kafka_cluster.produce(topic, [json.dumps({"id": i}).encode() for i in range(start, start + 10)],
                                  partition=start // 10 % 4)
            produced[0] += 10
            time.sleep(0.02)

    a = Server(flows, state).start()  # two servers, each with its own state DB, one consumer group
    b = None
    producer = threading.Thread(target=feed)
    producer.start()
    try:
        wait_until(lambda: len(runs(a)) >= 60, "server A consuming")
        b = Server(flows, tmp_path / "state-b.db").start()
        wait_until(lambda: any(r.get("event") == "kafka_assigned" for r in b.logs()), "B joined the group")
        wait_until(lambda: any(r.get("event") == "kafka_revoked" for r in a.logs()), "A gave partitions up")
        wait_until(lambda: len(runs(b)) >= 20, "B consuming")
        stop.set()
        producer.join()
        n = produced[0]
        wait_until(lambda: len(runs(a)) + len(runs(b)) >= n and all_done(a, 0) and all_done(b, 0),
                   "every message to have run", timeout=60)
        accepted = [metric(s, "flowrun_triggers_accepted_total") for s in (a, b)]
        duplicates = [metric(s, "flowrun_triggers_duplicate_total") for s in (a, b)]
        skipped = [metric(s, "flowrun_trigger_events_total", "skipped") for s in (a, b)]
        a.stop()
        b.stop()
    finally:
        stop.set()
        producer.join()
        for s in (a, b):
            if s is not None and s.proc.poll() is None:
                s.proc.kill()
    rs = runs(a) + runs(b)
    assert len(rs) == n
    assert sorted(int(json.loads(r["outputs"])["id"]) for r in rs) == list(range(n))
    assert len({r["dedupe_key"] for r in rs}) == n
    assert all(x > 0 for x in accepted) and sum(accepted) == n  # both consumed, each message once
    assert duplicates == [0, 0] and skipped == [0, 0]  # nobody re-read what the other had handled
    assert sum(kafka_cluster.committed(f"g-{topic}", topic).values()) == n  # every offset committed


def test_kill_9_while_consuming_then_a_restart_gives_exactly_one_run_per_message(tmp_path, kafka_cluster):
    topic = kafka_cluster.create_topic(kafka_cluster.topic("crash"), 4)
    n = 1500
    kafka_cluster.produce(topic, [json.dumps({"id": i}).encode() for i in range(n)])
    flows = folder(tmp_path, kafka_cluster, topic, f"g-{topic}")
    state = tmp_path / "state.db"
    server = Server(flows, state).start()
    try:
        wait_until(lambda: len(runs(server)) >= 200, "consumption under way")
        server.kill9()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    taken = len(runs(server))
    assert 200 <= taken < n  # killed mid-stream

    again = Server(flows, state).start()
    try:
        wait_until(lambda: all_done(again, n), "every message to have run", timeout=90)
        again.stop()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
    rs = runs(again)
    assert len(rs) == n
    assert sorted(int(json.loads(r["outputs"])["id"]) for r in rs) == list(range(n))
    keys = [r["dedupe_key"] for r in rs]
    assert len(set(keys)) == n and all(re.fullmatch(rf"orders:{topic}/[0-3]/\d+", k) for k in keys)
    assert sum(o for o in kafka_cluster.committed(f"g-{topic}", topic).values() if o > 0) == n
