"""Run the events chain end to end, offline, against loopback peers of every system.

    python examples/events/demo.py [--work DIR]

The three flows are in examples/events/flows/:

    Stripe webhook --(order_paid.yaml)--> EventBridge bus acme-orders
      --(rule acme-order-paid)--> SQS queue acme-order-paid
      --(fulfil_order.yaml)--> Kafka topic acme.orders.paid
      --(notify_order.yaml)--> Kinesis stream acme-order-events + Event Grid CloudEvent

This process hosts the peers on 127.0.0.1, the ones the test suite uses (tests/support, so
install the test extra: pip install -e '.[all,test]'): moto's ThreadedMotoServer (EventBridge,
SQS, Kinesis), librdkafka's mock cluster (it lives inside the process that creates it: its
bootstrap address goes to `flowrun serve` through the connections file) and an Event Grid
topic fake. It sets up the bus, the rule targeting the queue (with the queue policy AWS
requires and a dead-letter queue), the stream and the topics; writes connections.yaml with each
peer's address (secrets stay in the environment: demo values unless already set); serves the
three flows with a real `flowrun serve` subprocess (pull triggers only run under serve); posts
event.json as Stripe would (signed with the Stripe SDK's own helper), then the same event again
(Stripe retries: no second run) and a forged one (refused); waits until the Kinesis record and
the Event Grid event arrive, the three runs succeeded, the SQS message is deleted and the Kafka
offset committed; prints each hop's id, offset or sequence number, writes them to
DIR/chain.json, and exits 0 when the chain is whole.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.eventgrid import EventGridTopic  # noqa: E402
from tests.support.kafka import MockCluster  # noqa: E402
from tests.support.moto import Moto  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

DEMO_SECRETS = {"STRIPE_WEBHOOK_SECRET": "whsec_demo_events",
                "AWS_DEMO_ACCESS_KEY_ID": "AKIAFLOWRUNDEMO00001", "AWS_DEMO_SECRET_ACCESS_KEY": "demo-aws-secret",
                "EVENTGRID_TOPIC_KEY": "demo-eventgrid-key"}
BUS, RULE, QUEUE, STREAM = "acme-orders", "acme-order-paid", "acme-order-paid", "acme-order-events"
TOPIC, DEAD_LETTERS, GROUP = "acme.orders.paid", "acme.orders.paid.dlq", "flowrun-notify-order"
PARTITIONS = 3
TIMEOUT = 90.0  # a safety net on a loaded machine: the chain normally completes in a few seconds


@dataclass
class Peers:
    """The loopback peers; ``stop()`` stops them all."""

    moto: Moto
    kafka: MockCluster
    eventgrid: EventGridTopic
    queue_url: str = ""
    dlq_url: str = ""
    stopping: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stopping):
            stop()


def start_peers() -> Peers:
    """moto with the bus, the rule -> queue (+ dead-letter queue) and the stream; the Kafka mock
    cluster with the topics; the Event Grid topic, which accepts the connection's key only."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = Moto()
    try:
        dlq_url = moto.sqs.create_queue(QueueName=QUEUE + "-dlq")["QueueUrl"]
        queue_url = moto.sqs.create_queue(QueueName=QUEUE, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": moto.arn(dlq_url), "maxReceiveCount": "3"})})["QueueUrl"]
        moto.events.create_event_bus(Name=BUS)
        rule_arn = moto.events.put_rule(Name=RULE, EventBusName=BUS, EventPattern=json.dumps(
            {"source": ["com.acme.shop"], "detail-type": ["OrderPaid"]}))["RuleArn"]
        queue_arn = moto.arn(queue_url)
        # what AWS requires before a rule may send to a queue: the queue's policy lets EventBridge
        # send on behalf of this rule only
        moto.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Sid": "EventBridgeToQueue", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage", "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
        moto.events.put_targets(Rule=RULE, EventBusName=BUS, Targets=[{"Id": "fulfil-order", "Arn": queue_arn}])
        moto.kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        moto.kinesis.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.05})
        kafka = MockCluster(brokers=3)
        kafka.create_topic(TOPIC, PARTITIONS)
        kafka.create_topic(DEAD_LETTERS, 1)
        eventgrid = EventGridTopic(key=os.environ["EVENTGRID_TOPIC_KEY"]).__enter__()
    except BaseException:
        moto.stop()
        raise
    peers = Peers(moto, kafka, eventgrid, queue_url, dlq_url)
    peers.stopping += [moto.stop, lambda: eventgrid.__exit__(None, None, None)]
    return peers


def write_connections(work: Path, peers: Peers) -> Path:
    """The example's connections.yaml with every endpoint on its peer."""
    conns = yaml.safe_load((HERE / "connections.yaml").read_text())["connections"]
    conns["aws"]["endpoint"] = peers.moto.url
    conns["kafka"]["settings"]["bootstrap_servers"] = peers.kafka.bootstrap
    conns["eventgrid"]["endpoint"] = peers.eventgrid.url
    path = work / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": conns}, sort_keys=False))
    return path


class Serve:
    """A real `flowrun serve` of examples/events/flows, its JSON-lines log in ``work/serve.log``."""

    def __init__(self, work: Path, connections: Path):
        self.work, self.log = work, work / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--state", str(work / "state.db"), "--connections",
             str(connections), "serve", "--flows", str(HERE / "flows"), "--port", "0"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        self.url = wait_until(self._listening, "flowrun serve did not start (see serve.log)", timeout=TIMEOUT)

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def _listening(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError("flowrun serve exited:\n" + self.log.read_text(errors="replace")[-3000:])
        return next((r["url"] for r in self.lines() if r.get("event") == "listening"), None)

    def problems(self) -> list[str]:
        """What serve logged as a warning or an error, but for refused requests (the forged one), and
        any line that is not JSON (an SDK writing to stderr around the JSON log)."""
        return [r.get("msg") or r["raw"] for r in self.lines() if "raw" in r or (
            r.get("event") != "rejected" and str(r.get("level")).lower() in ("warning", "error", "critical"))]

    def rejected(self) -> list[dict]:
        return [{k: r.get(k) for k in ("flow", "reason", "http_status")} for r in self.lines()
                if r.get("event") == "rejected"]

    def stopped(self) -> bool:
        """Did serve drain and stop cleanly (its last word, whatever uvicorn's exit status)?"""
        return any(r.get("event") == "stopped" for r in self.lines())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def post_webhook(url: str, payload: str, secret: str) -> tuple[int, dict, str | None]:
    """POST ``payload`` as Stripe would, signed with ``secret``: (status, JSON reply, run id)."""
    import httpx
    from stripe import WebhookSignature

    signature = WebhookSignature.generate_signature_header(payload, secret)
    reply = httpx.post(f"{url}/flows/order_paid/triggers/stripe_event", content=payload.encode(), timeout=60,
                       headers={"Content-Type": "application/json", "Stripe-Signature": signature})
    try:
        body = reply.json()
    except ValueError:
        body = {"text": reply.text}
    return reply.status_code, body, reply.headers.get("X-Flowrun-Run-Id")


def kinesis_records(peers: Peers) -> list[dict]:
    """Every record on the stream, read from each shard's start."""
    kinesis, out = peers.moto.kinesis, []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            got = kinesis.get_records(ShardIterator=it, Limit=1000)
            out += [{"shardId": shard["ShardId"], "sequenceNumber": r["SequenceNumber"],
                     "partitionKey": r["PartitionKey"], "data": json.loads(r["Data"])} for r in got["Records"]]
            it = got.get("NextShardIterator") if got["Records"] else None
    return out


class Runs:
    """The runs of the three flows, read through the engine's API while serve writes them."""

    FLOWS = ("order_paid", "fulfil_order", "notify_order")

    def __init__(self, state: Path):
        import engine

        self.engine = engine.Engine(state)

    def __call__(self) -> dict[str, list[Any]]:
        return {flow: [self.engine.result(r.id) for r in self.engine.list_runs(flow=flow)] for flow in self.FLOWS}

    def close(self) -> None:
        self.engine.close()


def chain_done(peers: Peers, runs: Runs) -> dict | None:
    """Everything the chain promises, once it has all happened (else None); a run that failed
    raises at once with its error, instead of waiting for what will not come."""
    got = runs()
    for flow, rs in got.items():
        for r in rs:
            if r.status in ("Failed", "Cancelled", "TimedOut"):
                why = [f"{path}: {(step.error or {}).get('code')}: {(step.error or {}).get('message')}"
                       for path, step in r.steps.items() if step.status == "Failed"]
                raise RuntimeError(f"run {r.id} of {flow} ended {r.status}: "
                                   + "; ".join(why or [str((r.error or {}).get("message"))]))
    if not all(rs and all(r.status == "Succeeded" for r in rs) for rs in got.values()):
        return None
    events, records = list(peers.eventgrid.events), kinesis_records(peers)
    if not events or not records:
        return None
    if peers.moto.count(peers.queue_url):  # the message is deleted once its run succeeded
        return None
    offset = records[0]["data"]["kafka"]
    committed = peers.kafka.committed(GROUP, TOPIC, PARTITIONS)
    if committed.get(offset["partition"], -1) <= offset["offset"]:  # committed after the run was
        return None
    return {"events": events, "records": records, "runs": got, "committed": committed}


def run_chain(work: Path) -> dict:
    """Start the peers and `flowrun serve`, post the webhook, wait for the end of the chain:
    the chain's summary (JSON-able)."""
    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    payload = (HERE / "event.json").read_text()
    peers = start_peers()
    serve = runs = None
    try:
        serve = Serve(work, write_connections(work, peers))
        runs = Runs(work / "state.db")
        status, reply, run_id = post_webhook(serve.url, payload, os.environ["STRIPE_WEBHOOK_SECRET"])
        again = post_webhook(serve.url, payload, os.environ["STRIPE_WEBHOOK_SECRET"])  # Stripe retries
        forged = post_webhook(serve.url, payload, "whsec_not_the_secret")
        done = wait_until(lambda: chain_done(peers, runs),
                          "the chain did not complete (see serve.log)", timeout=TIMEOUT, interval=0.05)
        dlq = peers.moto.count(peers.dlq_url)
        exit_code = serve.stop()
        problems, stopped, rejected = serve.problems(), serve.stopped(), serve.rejected()
    finally:
        if runs is not None:
            runs.close()
        if serve is not None and serve.proc.poll() is None:
            serve.proc.kill()
        peers.stop()
    [event], [record] = done["events"], done["records"]
    flows = {flow: [{"runId": r.id, "status": str(r.status), "dedupeKey": r.dedupe_key, "outputs": r.outputs}
                    for r in rs]
             for flow, rs in done["runs"].items()}
    kafka = record["data"]["kafka"]
    return {
        "webhook": {"status": status, "reply": reply, "runId": run_id, "stripeEvent": json.loads(payload)["id"]},
        "webhookRetried": {"status": again[0], "runId": again[2]},
        "webhookForged": {"status": forged[0], "reply": forged[1]},
        "eventBridge": {"bus": BUS, "rule": RULE, "eventId": record["data"]["eventBridgeId"]},
        "sqs": {"queue": QUEUE, "messageId": record["data"]["sqsMessageId"], "deadLetters": dlq},
        "kafka": {**kafka, "committed": done["committed"][kafka["partition"]]},
        "kinesis": {"stream": STREAM, "records": done["records"]},
        "eventGrid": {"events": done["events"]},
        "runs": flows,
        "serve": {"exitCode": exit_code, "stopped": stopped, "problems": problems, "rejected": rejected},
        "state": str(work / "state.db"),
    }


def whole(chain: dict) -> bool:
    """Does every hop carry the ids of the hops before it, exactly once, as each run recorded?"""
    events, records, runs_ = chain["eventGrid"]["events"], chain["kinesis"]["records"], chain["runs"]
    if len(events) != 1 or len(records) != 1 or any(len(rs) != 1 for rs in runs_.values()):
        return False
    [event], [record] = events, records
    [paid], [fulfil], [notify] = runs_["order_paid"], runs_["fulfil_order"], runs_["notify_order"]
    kafka, message = chain["kafka"], chain["sqs"]["messageId"]
    return (chain["webhook"]["status"] == 200 and chain["webhookRetried"]["runId"] == chain["webhook"]["runId"]
            and chain["webhookForged"]["status"] == 403
            and chain["serve"]["rejected"] == [{"flow": "order_paid", "reason": "forbidden", "http_status": 403}]
            and paid["runId"] == chain["webhook"]["runId"]
            and chain["webhook"]["reply"].get("eventBridgeId") == paid["outputs"]["eventBridgeId"]
            == chain["eventBridge"]["eventId"]
            and fulfil["dedupeKey"].endswith(message)
            and fulfil["outputs"] == {"partition": kafka["partition"], "offset": kafka["offset"]}
            and notify["dedupeKey"].endswith(f"{kafka['topic']}/{kafka['partition']}/{kafka['offset']}")
            and notify["outputs"]["kinesis"]["sequenceNumber"] == record["sequenceNumber"]
            and notify["outputs"]["eventGridId"] == event["id"]
            and event["data"]["kinesis"] == {"shardId": record["shardId"], "sequenceNumber": record["sequenceNumber"]}
            and event["data"]["sqsMessageId"] == message == record["data"]["sqsMessageId"]
            and event["data"]["stripeEvent"] == chain["webhook"]["stripeEvent"]
            and kafka["committed"] == kafka["offset"] + 1 and chain["sqs"]["deadLetters"] == 0
            and all(r["status"] == "Succeeded" for rs in runs_.values() for r in rs)
            and chain["serve"]["stopped"] and not chain["serve"]["problems"])


def report(chain: dict) -> None:
    hook, eb, sqs, kafka = chain["webhook"], chain["eventBridge"], chain["sqs"], chain["kafka"]
    [record], [event] = chain["kinesis"]["records"], chain["eventGrid"]["events"]
    run = {flow: rs[0]["runId"] if rs else "-" for flow, rs in chain["runs"].items()}
    print(f"Stripe      event {hook['stripeEvent']} (order {record['data']['orderId']}, "
          f"{record['data']['amount'] / 100:.2f} {record['data']['currency']})")
    print(f"  -> flowrun serve HTTP {hook['status']}, run {run['order_paid']} (order_paid)")
    print(f"     the same event again: HTTP {chain['webhookRetried']['status']}, run "
          f"{chain['webhookRetried']['runId']} (no second run); a forged signature: HTTP "
          f"{chain['webhookForged']['status']}")
    print(f"EventBridge event {eb['eventId']} on bus {eb['bus']}, routed by rule {eb['rule']}")
    print(f"SQS         message {sqs['messageId']} on {sqs['queue']} -> run {run['fulfil_order']} (fulfil_order);"
          f" deleted, {sqs['deadLetters']} in the dead-letter queue")
    print(f"Kafka       {kafka['topic']} partition {kafka['partition']} offset {kafka['offset']} -> run "
          f"{run['notify_order']} (notify_order); group offset committed: {kafka['committed']}")
    print(f"Kinesis     {chain['kinesis']['stream']} {record['shardId']} sequence {record['sequenceNumber']}")
    print(f"Event Grid  CloudEvent {event['id']} type {event['type']} subject {event['subject']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the state DB, serve.log and chain.json "
                        "(default: a new temporary folder)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="events-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        chain = run_chain(work)
    except (AssertionError, RuntimeError, OSError) as exc:  # a peer or serve did not come up, or the chain stalled
        print(f"events demo failed: {exc}", file=sys.stderr)
        if (work / "serve.log").is_file():
            print(f"(serve log: {work / 'serve.log'})", file=sys.stderr)
        return 1
    (work / "chain.json").write_text(json.dumps(chain, indent=2))
    report(chain)
    ok = whole(chain)
    for problem in chain["serve"]["problems"]:
        print(f"serve logged an error: {problem}")
    print(f"(state database: {chain['state']}; serve log and chain.json beside it)")
    print("the chain is whole" if ok else "THE CHAIN IS BROKEN: see chain.json and serve.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
