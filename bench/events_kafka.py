"""Benchmark of the Kafka nodes against librdkafka's mock cluster (hosted in this process).

    .venv/bin/python bench/events_kafka.py             # about a minute; prints a table
    .venv/bin/python bench/events_kafka.py --produce 20000 --consume 5000 --json

1. ``kafka.Produce``: one action sending a batch of N small JSON messages (``{"id": i, "sku":
   ...}``, given as the run's input) through the connection's idempotent producer, waiting for
   every delivery report. Measured: the action's own duration from the state DB (started ->
   ended), as messages/s; beside it, raw confluent-kafka producing the same messages (the same
   producer settings: idempotence, acks=all, lz4, linger.ms=5; json.dumps + produce + flush).
2. ``kafka.Consume``: a real ``flowrun serve`` (durable SQLite state: each run committed before
   its offset) with a 3-action flow, consuming M messages produced at once to a 4-partition
   topic. Measured: runs/s from the first message produced to the last run finished, and the
   latency from each message's producer timestamp to its run's commit (``runs.created``):
   p50 / p99 / max. Beside it, the engine alone running the same flow back to back in process.
   Everything (the mock brokers, the producer, the server and its runs) shares
   this machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.kafka import QUIET, MockCluster  # noqa: E402  (the same mock cluster the tests use)

EXTRA: list[str] = []
PRODUCE = """\
name: produce
triggers:
  manual: {{type: Manual}}
actions:
  send:
    type: kafka.Produce
    connection: kafka
    inputs: {{topic: {topic}, messages: "{{{{ triggerBody() }}}}"}}
"""
CONSUME = """\
name: consume
triggers:
  orders:
    type: kafka.Consume
    connection: kafka
    topics: [{topic}]
    groupId: bench-{topic}
actions:
  parse: {{type: Compose, inputs: "{{{{ triggerBody().id }}}}"}}
  price: {{type: Compose, runAfter: {{parse: [Succeeded]}}, inputs: "{{{{ triggerBody().qty * 3 }}}}"}}
  note: {{type: Compose, runAfter: {{price: [Succeeded]}}, inputs: "order {{{{ outputs('parse') }}}}"}}
"""


def connections(folder: Path, cluster: MockCluster) -> None:
    import yaml

    (folder / "connections.yaml").write_text(yaml.safe_dump({"connections": {"kafka": cluster.connection()}}))


def message(i: int) -> dict:
    return {"id": i, "sku": f"SKU-{i % 977:04d}", "qty": i % 7 + 1}


def bench_produce(cluster: MockCluster, n: int) -> dict:
    import engine
    from confluent_kafka import Producer

    from nodes.kafka.client import PRODUCER_DEFAULTS

    values = [message(i) for i in range(n)]
    # raw confluent-kafka: the baseline
    topic = cluster.topic("raw")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, **PRODUCER_DEFAULTS, **QUIET})
    t0 = time.perf_counter()
    for v in values:
        data = json.dumps(v, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(topic, data)
                break
            except BufferError:
                producer.poll(0.005)
        producer.poll(0)
    assert producer.flush(60) == 0
    raw = n / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        connections(folder, cluster)
        topic = cluster.topic("node")
        (folder / "produce.yaml").write_text(PRODUCE.format(topic=topic))
        t0 = time.perf_counter()
        run = engine.run_file(folder / "produce.yaml", input=[{"value": v} for v in values],
                              state=folder / "state.db", connections=folder / "connections.yaml")
        total = time.perf_counter() - t0
        assert run.status == "Succeeded", run.error
        step = run.steps["send"]
        assert step.outputs["count"] == n
        action = step.ended - step.started
    # the node's own code (checks, encoding, produce, delivery reports) without the engine's
    # evaluation of a 100,000-item input: what kafka.Produce itself costs
    from engine.plugin import Connection

    from nodes.kafka.client import CONNECTION, KafkaClient
    from nodes.kafka.produce import produce

    client = KafkaClient(Connection("bench", CONNECTION, cluster.connection()["settings"], {}, None))
    inputs = {"topic": cluster.topic("direct"), "messages": [{"value": v} for v in values]}
    t0 = time.perf_counter()
    assert produce(client, inputs)["count"] == n
    direct = n / (time.perf_counter() - t0)
    client.close()
    return {"messages": n, "node_msgs_per_s": n / action, "node_action_s": action, "run_total_s": total,
            "raw_msgs_per_s": raw, "node_code_msgs_per_s": direct}


def bench_consume(cluster: MockCluster, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "flows"
        folder.mkdir()
        connections(folder, cluster)
        topic = cluster.create_topic(cluster.topic("consume"), 4)
        (folder / "consume.yaml").write_text(CONSUME.format(topic=topic))
        state = Path(tmp) / "state.db"
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "serve", "--flows",
                                 str(folder), "--port", "0", *EXTRA], cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            for line in proc.stderr:  # until the consumer has its partitions
                if '"kafka_assigned"' in line:
                    break
            else:
                raise RuntimeError("flowrun serve stopped before consuming")
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            t0 = time.time()
            for start in range(0, n, 5000):
                cluster.produce(topic, [json.dumps(message(i)).encode() for i in range(start, min(n, start + 5000))],
                                partition=None)
            con = sqlite3.connect(str(state), timeout=30)
            deadline = time.time() + 600
            while time.time() < deadline:
                done = con.execute("SELECT count(*) FROM runs WHERE flow = 'consume' AND status = 'Succeeded'"
                                   ).fetchone()[0]
                if done >= n:
                    break
                time.sleep(0.1)
            rows = con.execute("SELECT created, ended, payload FROM runs WHERE flow = 'consume'").fetchall()
            con.close()
        finally:
            proc.terminate()
            proc.wait(30)
    assert len(rows) == n, f"{len(rows)} runs for {n} messages"
    end = max(r[1] for r in rows)
    lat = sorted(r[0] - json.loads(r[2])["timestamp"] / 1000 for r in rows)
    return {"messages": n, "runs_per_s": n / (end - t0), "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "max_ms": lat[-1] * 1000}


def engine_baseline(n: int = 300) -> float:
    """The same 3-action flow run back to back in this process (engine.run, durable): runs/s."""
    import anyio

    from engine.api import Engine

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "small.yaml"
        actions = CONSUME.format(topic="x").split("actions:")[1]
        path.write_text("name: small\ntriggers:\n  manual: {type: Manual}\nactions:" + actions)
        eng = Engine(Path(tmp) / "state.db")
        flow = eng.load(path)

        async def many() -> None:
            for i in range(n):
                r = await eng.run(flow, input=message(i))
                assert r.status == "Succeeded", r.error

        t = time.perf_counter()
        anyio.run(many)
        rate = n / (time.perf_counter() - t)
        eng.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--produce", type=int, default=100_000)
    ap.add_argument("--consume", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cluster = MockCluster()
    produced = bench_produce(cluster, args.produce)
    consumed = bench_consume(cluster, args.consume)
    consumed["engine_runs_per_s"] = engine_baseline()
    if args.json:
        print(json.dumps({"produce": produced, "consume": consumed}, indent=2))
        return
    print(f"kafka.Produce, one batch of {produced['messages']:,} small JSON messages (mock cluster)")
    print(f"  kafka.Produce action      {produced['node_msgs_per_s']:>10,.0f} msg/s   "
          f"({produced['node_action_s']:.2f} s; whole run incl. storing the input {produced['run_total_s']:.2f} s)")
    print(f"  kafka.Produce's own code  {produced['node_code_msgs_per_s']:>10,.0f} msg/s   (the node without the "
          f"engine's evaluation and checks of its 100,000-item input)")
    print(f"  raw confluent-kafka       {produced['raw_msgs_per_s']:>10,.0f} msg/s   (baseline, same settings)")
    print(f"kafka.Consume -> 3-action flow, {consumed['messages']:,} messages, durable (flowrun serve)")
    print(f"  end to end                {consumed['runs_per_s']:>10,.0f} runs/s")
    print(f"  engine alone              {consumed['engine_runs_per_s']:>10,.0f} runs/s   (baseline: the same flow "
          f"run back to back in process, no Kafka)")
    print(f"  produce -> run committed  p50 {consumed['p50_ms']:,.0f} ms   p99 {consumed['p99_ms']:,.0f} ms   "
          f"max {consumed['max_ms']:,.0f} ms")


if __name__ == "__main__":
    main()
