"""Workers under chaos (not collected by pytest: minutes, not seconds). Run from the repository:

    SEED=3 N=250 TTL=2 LIMIT=300 python -m tests.chaos.workers_chaos

Queues N runs of a flow with a Foreach of Http calls and Workflow children, an Until over a
variable, a Scope with a Wait, a retried Http, step timeouts and (one run in five) a Terminate,
on three ``flowrun worker`` processes; every 0.2-1.5 s one worker is killed -9, SIGSTOPped
past its lease ttl and resumed, has its writer or LISTEN backend terminated, or a run is
cancelled (``Engine.cancel``). Then checks the invariants over ``runs`` and ``steps``: a
finished run has no Running step; a Succeeded run's loop counts its iteration rows and its
actions all Succeeded (or Skipped) with outputs. Prints BAD lines and their count.
"""
import json, os, random, signal, subprocess, sys, tempfile, time
import psycopg
import engine
from tests.support import postgres
from tests.support.recorder import Recorder
from tests.engine.test_worker import IdempotentVendor

TTL = float(os.environ.get("TTL", "2"))
N = int(os.environ.get("N", "60"))
SEED = int(os.environ.get("SEED", "1"))
DIR = tempfile.mkdtemp(prefix=f"chaos{SEED}-")

PARENT = """\
name: parent
parameters:
  api: {type: string}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  init: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 0}]}}
  each:
    type: Foreach
    foreach: "{{ triggerBody()['items'] }}"
    runAfter: {init: [Succeeded]}
    actions:
      charge:
        type: Http
        inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: "{{ item() }}"}, idempotencyKey: true}
      kid:
        type: Workflow
        runAfter: {charge: [Succeeded]}
        inputs: {flow: child.yaml, body: {n: "{{ item() }}"}, parameters: {api: "{{ parameters('api') }}"}}
  loop:
    type: Until
    expression: "{{ greaterOrEquals(variables('n'), 3) }}"
    limit: {count: 10}
    runAfter: {init: [Succeeded]}
    actions:
      inc: {type: IncrementVariable, inputs: {name: n, value: 1}}
      ask:
        type: Http
        runAfter: {inc: [Succeeded]}
        inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {u: "{{ variables('n') }}"}, idempotencyKey: true}
  sc:
    type: Scope
    runAfter: {each: [Succeeded]}
    actions:
      nap: {type: Wait, inputs: {interval: {count: 1, unit: Second}}}
      last:
        type: Http
        runAfter: {nap: [Succeeded]}
        inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: {n: last}, idempotencyKey: true}
  flaky:
    type: Http
    runAfter: {init: [Succeeded]}
    retryPolicy: {type: fixed, count: 3, interval: PT0.2S}
    inputs: {method: POST, uri: "{{ parameters('api') }}/flaky", body: {n: 1}, idempotencyKey: true}
  slow:
    type: Foreach
    foreach: [1, 2]
    runAfter: {init: [Succeeded]}
    actions:
      hang: {type: Wait, inputs: {interval: {count: 1, unit: Hour}}, timeout: PT0.3S}
      after: {type: Compose, inputs: x, runAfter: {hang: [TimedOut]}}
  maybe:
    type: If
    expression: "{{ triggerBody()['term'] }}"
    runAfter: {init: [Succeeded]}
    actions:
      nap0: {type: Wait, inputs: {interval: {count: 0.5, unit: Second}}}
      stop: {type: Terminate, inputs: {runStatus: Failed, runError: {code: Stop, message: stop}}, runAfter: {nap0: [Succeeded]}}
outputs:
  results: {value: "{{ result('each') }}"}
"""
CHILD = """\
name: child
parameters:
  api: {type: string, default: ""}
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  ask:
    type: Http
    inputs: {method: POST, uri: "{{ parameters('api') }}/charge", body: "{{ triggerBody() }}", idempotencyKey: true}
  sq: {type: Compose, runAfter: {ask: [Succeeded]}, inputs: "{{ mul(triggerBody().n, triggerBody().n) }}"}
outputs:
  square: {value: "{{ outputs('sq') }}"}
"""
open(f"{DIR}/parent.yaml", "w").write(PARENT)
open(f"{DIR}/child.yaml", "w").write(CHILD)


def start_worker(url, capacity, i):
    err = open(f"{DIR}/w{i}-{time.time():.0f}.err", "w")
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", url, "worker", "--poll", "0.5",
                             "--park-after", "0.3", "--lease-ttl", str(TTL), "--capacity", str(capacity)],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, cwd=DIR)


def check(conn):
    """The invariants broken in ``conn``'s runs and steps, one line each."""
    bad = []
    q = lambda sql, *a: conn.execute(sql, a).fetchall()
    for rid, status in q("SELECT id, status FROM runs"):
        if status in ("Succeeded", "Failed", "Cancelled", "TimedOut"):
            running = q("SELECT path FROM steps WHERE run_id = %s AND status = 'Running'", rid)
            if running:
                bad.append(f"{rid} {status} with Running steps {running}")
        if status == "Succeeded":
            for path, outputs in q("SELECT path, outputs FROM steps WHERE run_id = %s AND type = 'Foreach'", rid):
                n = q("SELECT count(*) FROM steps WHERE run_id = %s AND type='Iteration' AND action = %s", rid, path)[0][0]
                cnt = json.loads(outputs or "null")
                if not cnt or cnt.get("count") != n:
                    bad.append(f"{rid} foreach {path} outputs {outputs} vs {n} iteration rows")
            for path, typ, st, outputs in q("SELECT path, type, status, outputs FROM steps WHERE run_id = %s", rid):
                if typ in ("Http", "Workflow", "Compose") and st == "Succeeded" and outputs is None:
                    bad.append(f"{rid} {path} Succeeded with outputs None")
                if st not in ("Succeeded", "Skipped") and not path.startswith("slow"):
                    bad.append(f"{rid} Succeeded with {path} {st}")
    return bad


def main():
    url, schema = postgres.postgres_url()
    rng = random.Random(SEED)
    with Recorder() as rec:
        vendor = IdempotentVendor(rec)
        seen = {}
        def flaky(req):
            key = req.header("idempotency-key")
            seen[key] = seen.get(key, 0) + 1
            if seen[key] % 2:
                return 500, {"Content-Type": "application/json"}, b'{"err": 1}'
            return 200, {"Content-Type": "application/json"}, b'{"ok": 1}'
        rec.route("POST", "/flaky", handler=flaky)
        e = engine.Engine(url)
        flow = e.load(f"{DIR}/parent.yaml")
        ids = [e.start(flow, input={"items": list(range(rng.randrange(0, 4))), "term": rng.random() < 0.2}, params={"api": rec.url}, commit=False)
               for _ in range(N)]
        e.store.flush()
        workers = [start_worker(url, rng.choice([1, 2, 4]), i) for i in range(3)]
        admin = psycopg.connect(postgres.SERVER, autocommit=True)
        events = []
        def active():
            n = e.store.conn.execute("SELECT count(*) FROM runs WHERE status IN ('Queued','Running','Waiting')").fetchone()[0]
            e.store.flush()
            return n
        t0 = time.time()
        try:
            while (left := active()) and time.time() - t0 < float(os.environ.get("LIMIT", "300")):
                time.sleep(rng.uniform(0.2, 1.5))
                what = rng.choice(["kill", "stop", "term", "cancel", "none", "none"])
                i = rng.randrange(3)
                w = workers[i]
                if what == "kill":
                    os.killpg(w.pid, signal.SIGKILL); w.wait()
                    workers[i] = start_worker(url, rng.choice([1, 2, 4]), i)
                elif what == "stop":
                    os.killpg(w.pid, signal.SIGSTOP)
                    time.sleep(TTL + rng.uniform(0.2, 1.5))
                    os.killpg(w.pid, signal.SIGCONT)
                elif what == "term":
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                  (rng.choice(["flowrun-writer-", "flowrun-listen-"]) + str(w.pid),))
                elif what == "cancel":
                    live = [r[0] for r in e.store.conn.execute("SELECT id FROM runs WHERE status IN ('Running','Waiting')")]
                    e.store.flush()
                    if live:
                        rid = rng.choice(live)
                        try:
                            what += " " + e.cancel(rid)
                        except Exception as exc:
                            what += f" error {exc}"
                events.append((round(time.time() - t0, 1), what, i, left))
            print("left", active(), "events", len(events), {k: sum(1 for ev in events if ev[1].startswith(k)) for k in ["kill", "stop", "term", "cancel"]})
        finally:
            for w in workers:
                if w.poll() is None:
                    os.killpg(w.pid, signal.SIGCONT)
                    os.killpg(w.pid, signal.SIGTERM)
            for w in workers:
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL); w.wait()
        time.sleep(0.5)
        c = psycopg.connect(url, autocommit=True)
        print("statuses", c.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        bad = check(c)
        for b in bad:
            print("BAD", b)
        print("schema", schema, "bad", len(bad))
        json.dump(events, open(f"{DIR}/events.json", "w"))
        print("worker logs and events in", DIR)
        e.close()


if __name__ == "__main__":
    main()
