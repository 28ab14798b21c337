"""Benchmark of the AWS pull triggers in `flowrun serve` against moto: runs per second from an
SQS queue and from a Kinesis stream, each beside a baseline from the same run — raw boto3
draining the same source (SQS: ReceiveMessage of 10 + DeleteMessageBatch; Kinesis: GetRecords
over every shard) with nothing committed.

    .venv/bin/python bench/events_aws.py                  # a minute or two; prints a table
    .venv/bin/python bench/events_aws.py --messages 500 --json

moto runs in this process (ThreadedMotoServer on 127.0.0.1); `flowrun serve` is a real
subprocess with durable SQLite state and one flow per source (the trigger and one Compose
action). A trigger's figure is the time from the server being ready to every run having
succeeded. moto is the bottleneck (it serialises much of its work), so there is no target:
what matters is how close the trigger comes to the raw baseline.
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
KEY = {"TEST_AWS_KEY_ID": "AKIABENCH00000000001", "TEST_AWS_SECRET": "bench-secret",
       "AWS_EC2_METADATA_DISABLED": "true"}
SQS_FLOW = """\
name: sqs
triggers:
  queue: {{type: aws.sqs.Queue, connection: aws, queue: "{queue}", waitTimeSeconds: 1, maxInFlight: 100}}
actions:
  note: {{type: Compose, inputs: "{{{{ triggerBody().n }}}}"}}
"""
KINESIS_FLOW = """\
name: kinesis
triggers:
  stream: {{type: aws.kinesis.Stream, connection: aws, stream: "{stream}", startingPosition: TRIM_HORIZON,
            pollInterval: 0.1{batch}}}
actions:
  note: {{type: Compose, inputs: "{{{{ triggerBody() }}}}"}}
"""


def clients(url: str):
    import boto3

    kw = dict(region_name="us-east-1", endpoint_url=url, aws_access_key_id=KEY["TEST_AWS_KEY_ID"],
              aws_secret_access_key=KEY["TEST_AWS_SECRET"])
    return boto3.client("sqs", **kw), boto3.client("kinesis", **kw)


def fill_queue(sqs, name: str, n: int) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps({"n": i})}
                                                      for i in range(start, min(n, start + 10))])
    return url


def fill_stream(kinesis, name: str, n: int, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    for start in range(0, n, 500):
        kinesis.put_records(StreamName=name, Records=[{"Data": json.dumps({"n": i}).encode(), "PartitionKey": f"p{i}"}
                                                      for i in range(start, min(n, start + 500))])


def raw_sqs(sqs, url: str, n: int) -> float:
    t0, got = time.perf_counter(), 0
    while got < n:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                            for i, m in enumerate(msgs)])
        got += len(msgs)
    return n / (time.perf_counter() - t0)


def raw_kinesis(kinesis, name: str, n: int) -> float:
    t0, got = time.perf_counter(), 0
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = kinesis.get_records(ShardIterator=it, Limit=1000)
            got += len(out["Records"])
            it = out.get("NextShardIterator") if out["Records"] else None
    assert got == n, (got, n)
    return n / (time.perf_counter() - t0)


def served(tmp: Path, url: str, flow: str, text: str, n: int, runs_per_item: float = 1.0) -> float:
    folder, state = tmp / flow, tmp / f"{flow}.db"
    folder.mkdir()
    (folder / "connections.yaml").write_text(
        f"connections:\n  aws:\n    kind: aws\n    endpoint: {url}\n    settings: {{region: us-east-1}}\n"
        f"    secrets: {{access_key_id: TEST_AWS_KEY_ID, secret_access_key: TEST_AWS_SECRET}}\n")
    (folder / f"{flow}.yaml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **KEY}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(state), "serve", "--flows",
                             str(folder), "--port", "0"], env=env, stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)
    try:
        for line in proc.stderr:  # wait until it is ready
            if '"listening"' in line:
                break
        t0 = time.perf_counter()
        want = int(n * runs_per_item)
        deadline = time.time() + 600
        while time.time() < deadline:
            time.sleep(0.05)
            try:
                with sqlite3.connect(str(state), timeout=10) as con:
                    done = con.execute("SELECT count(*) FROM runs WHERE status = 'Succeeded'").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= want:
                return want / (time.perf_counter() - t0)
        raise SystemExit(f"{flow}: only {done} of {want} runs finished")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.update(KEY)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    sqs, kinesis = clients(url)
    n = args.messages
    out = {"messages": n, "shards": args.shards}
    try:
        log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
        out["sqs_raw_boto3_msgs_per_s"] = raw_sqs(sqs, fill_queue(sqs, "raw", n), n)
        q = fill_queue(sqs, "served", n)
        log(out)
        out["sqs_trigger_runs_per_s"] = served(Path(tempfile.mkdtemp()), url, "sqs", SQS_FLOW.format(queue=q), n)
        fill_stream(kinesis, "raw", n, args.shards)
        log(out)
        out["kinesis_raw_boto3_records_per_s"] = raw_kinesis(kinesis, "raw", n)
        fill_stream(kinesis, "served", n, args.shards)
        log(out)
        out["kinesis_trigger_runs_per_s"] = served(Path(tempfile.mkdtemp()), url, "kinesis",
                                                   KINESIS_FLOW.format(stream="served", batch=""), n)
        fill_stream(kinesis, "batched", n, args.shards)
        log(out)
        out["kinesis_trigger_batch100_records_per_s"] = 100 * served(
            Path(tempfile.mkdtemp()), url, "kinesis", KINESIS_FLOW.format(stream="batched", batch=", batchSize: 100"),
            n, runs_per_item=1 / 100)
    finally:
        server.stop()
    if args.json:
        print(json.dumps(out))
        return
    print(f"AWS pull triggers against moto, {n} messages ({args.shards} Kinesis shards)")
    print(f"  SQS     raw boto3 receive+delete      {out['sqs_raw_boto3_msgs_per_s']:8.0f} msgs/s   (baseline)")
    print(f"  SQS     aws.sqs.Queue trigger         {out['sqs_trigger_runs_per_s']:8.0f} runs/s")
    print(f"  Kinesis raw boto3 GetRecords          {out['kinesis_raw_boto3_records_per_s']:8.0f} records/s (baseline)")
    print(f"  Kinesis aws.kinesis.Stream trigger    {out['kinesis_trigger_runs_per_s']:8.0f} runs/s")
    print(f"  Kinesis trigger, batchSize 100        {out['kinesis_trigger_batch100_records_per_s']:8.0f} records/s")


if __name__ == "__main__":
    main()
