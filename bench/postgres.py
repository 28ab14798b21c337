"""SQLite and PostgreSQL state, measured in one run: the same flows, the same machine.

    .venv/bin/python bench/postgres.py               # ~2 minutes; prints a table
    .venv/bin/python bench/postgres.py --json
    .venv/bin/python bench/postgres.py --workers-only --rounds 5 --compare /work/main   # before/after
    FLOWRUN_BENCH_POSTGRES=postgresql://... .venv/bin/python bench/postgres.py

Figures, for each backend:

1. ms per action in a chain of 1,000 Compose actions (one process: ``Engine.run``);
2. fanned-out actions/s: a Foreach of 10,000 Compose items, concurrency 50;
3. small runs/s (3 chained Composes each): SQLite in one process (64 at once, its only
   topology); PostgreSQL with 1, 2 and 4 ``flowrun worker`` processes draining 1,000 runs
   queued in one commit (workers started and warmed up first; timed from the commit to the
   last run Succeeded, polled every 20 ms). Measured in interleaved rounds (SQLite, 1, 2, 4
   workers; again; ``--rounds``, 3 by default), each round printed, then the medians: other
   work on a shared machine drifts over minutes, so every case meets about the same load.
   ``--compare DIR`` runs another checkout's workers (``DIR`` on PYTHONPATH) right after this
   one's in each round: a before/after in one invocation;
4. accepted webhooks/s: ``flowrun serve`` closed loop (bench/listener.py's generator, 32
   keep-alive connections) on SQLite, and on PostgreSQL with one and with two instances
   (queue mode: the runs are committed Queued for workers, none running).

Each PostgreSQL figure uses a fresh schema on the server (dropped after). On a shared
2-core machine every process here (server, workers, load generator, PostgreSQL) competes
for the same cores: the numbers are lower bounds of what separate machines give.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench(name: str):
    """bench/<name>.py as a module (bench/engine.py would shadow the engine package on sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVER = os.environ.get("FLOWRUN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


class Schema:
    """A fresh schema on the server for one measurement (``with Schema() as url:``)."""

    def __enter__(self) -> str:
        import psycopg

        self.name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.name}")
        sep = "&" if "?" in SERVER else "?"
        return f"{SERVER}{sep}options={quote(f'-csearch_path={self.name}')}"

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def chain_and_fanout(state_of) -> tuple[float, float]:
    b = _bench("engine")
    flowrun_chain, flowrun_foreach, write_flows = b.flowrun_chain, b.flowrun_foreach, b.write_flows

    with tempfile.TemporaryDirectory() as d:
        flows = write_flows(Path(d))
        with state_of(d, "chain") as state:
            ms = flowrun_chain(flows["chain"], state)
        with state_of(d, "fan") as state:
            per_s = flowrun_foreach(flows["foreach"], state)
    return ms, per_s


def sqlite_small_runs(n: int = 1000) -> float:
    import anyio

    from engine.api import Engine as E

    write_flows = _bench("engine").write_flows

    with tempfile.TemporaryDirectory() as d:
        flows = write_flows(Path(d))
        eng = E(Path(d, "state.db"))
        flow = eng.load(flows["small"])

        async def many() -> None:
            limiter = anyio.Semaphore(64)

            async def one(i: int) -> None:
                async with limiter:
                    assert (await eng.run(flow, input={"n": i})).status == "Succeeded"
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
        t = time.perf_counter()
        anyio.run(many)
        elapsed = time.perf_counter() - t
        eng.close()
    return n / elapsed


def _queue(url: str, flow_path: Path, n: int) -> None:
    from engine.api import Engine as E

    eng = E(url)
    flow = eng.load(flow_path)
    for i in range(n):
        eng.start(flow, input={"n": i}, commit=False)
    eng.store.flush()
    eng.close()


def _succeeded(conn) -> int:
    return conn.execute("SELECT count(*) FROM runs WHERE status = 'Succeeded'").fetchone()[0]


def pg_small_runs(workers: int, n: int = 1000, *, code: Path = ROOT) -> float:
    """Small runs/s drained by ``workers`` ``flowrun worker`` processes of the checkout ``code``
    (this one, or another for a before/after comparison: ``--compare``)."""
    import psycopg

    write_flows = _bench("engine").write_flows
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])))

    def queue(count: int) -> None:
        _queue(url, flows["small"], count)
        if code != ROOT:  # another checkout's workers may listen on the database-wide channel
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("NOTIFY flowrun_runs")

    with tempfile.TemporaryDirectory() as d, Schema() as url:
        flows = write_flows(Path(d))
        procs = [subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", url, "worker", "--capacity", "64",
                                   "--poll", "2"], cwd=code, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                queue(20 * workers)  # warm-up: every worker up and its caches filled
                while _succeeded(conn) < 20 * workers:
                    time.sleep(0.02)
                base = _succeeded(conn)
                t = time.perf_counter()
                queue(n)
                while _succeeded(conn) < base + n:
                    time.sleep(0.02)
                return n / (time.perf_counter() - t)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


def worker_rounds(rounds: int, compare: Path | None, say=print) -> dict:
    """Small runs/s with 1, 2 and 4 workers, in interleaved rounds (1, 2, 4, 1, 2, 4, ...) with
    the SQLite baseline measured in each round too: on a shared machine the load drifts during
    the bench, so each round sees about the same load for every case, and the medians compare.
    With ``compare`` (another checkout), its workers run right after this one's, case by case."""
    import statistics

    codes = {"this": ROOT} if compare is None else {"this": ROOT, "compare": compare}
    got: dict[str, list[float]] = {}
    for r in range(1, rounds + 1):
        cases = {"sqlite": sqlite_small_runs}
        for w in (1, 2, 4):
            for name, code in codes.items():
                cases[f"{name}_{w}"] = lambda w=w, code=code: pg_small_runs(w, code=code)
        line = []
        for key, measure in cases.items():
            got.setdefault(key, []).append(measure())
            line.append(f"{key} {got[key][-1]:,.0f}")
        say(f"round {r} (load {os.getloadavg()[0]:.1f}): " + ", ".join(line))
    return {k: {"rounds": v, "median": statistics.median(v)} for k, v in got.items()}


def webhooks(state: str, instances: int, seconds: float, connections: int = 32) -> float:
    import httpx
    lb = _bench("listener")
    FLOW, _free_port, _phase = lb.FLOW, lb._free_port, lb._phase

    with tempfile.TemporaryDirectory() as tmp:
        flows = Path(tmp, "flows")
        flows.mkdir()
        (flows / "bench.yaml").write_text(FLOW)
        ports = [_free_port() for _ in range(instances)]
        servers = [subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", state, "serve", "--flows",
                                     str(flows), "--port", str(p), "--log-level", "warning", "--max-in-flight", "4096"],
                                    cwd=tmp, env=ENV, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                   for p in ports]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            for url in urls:
                deadline = time.time() + 30
                while time.time() < deadline:
                    try:
                        if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
            trigger = "/flows/bench/triggers/hook"
            for url in urls:
                _phase(url, "closed", trigger, 1, 8)  # warm-up
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(instances) as pool:
                outs = list(pool.map(lambda u: _phase(u, "closed", trigger, seconds, connections // instances), urls))
        finally:
            for s in servers:
                s.terminate()
            for s in servers:
                s.wait(30)
    return sum(sum(v for k, v in o["statuses"].items() if 200 <= k < 300) / o["elapsed"] for o in outs)


def main() -> None:
    from contextlib import contextmanager

    p = argparse.ArgumentParser()
    p.add_argument("--json", action="store_true")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each webhook phase")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the worker measurements")
    p.add_argument("--compare", type=Path, help="another checkout (e.g. /work/main): its workers measured "
                                               "in the same rounds, alternating with this one's")
    p.add_argument("--workers-only", action="store_true", help="only the small-runs rounds (and SQLite's)")
    args = p.parse_args()
    say = lambda *a: print(*a, file=sys.stderr if args.json else sys.stdout, flush=True)  # noqa: E731

    @contextmanager
    def sqlite_state(d: str, name: str):
        yield Path(d, f"{name}.db")

    @contextmanager
    def pg_state(d: str, name: str):
        with Schema() as url:
            yield url

    out: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    say(f"load average at start {out['load_before'][0]:.1f} {out['load_before'][1]:.1f} "
        f"{out['load_before'][2]:.1f} ({out['cpus']} cores)")
    if not args.workers_only:
        out["sqlite_ms_per_chained_action"], out["sqlite_fanout_actions_per_s"] = chain_and_fanout(sqlite_state)
        out["pg_ms_per_chained_action"], out["pg_fanout_actions_per_s"] = chain_and_fanout(pg_state)
    out["small_runs_per_s"] = worker_rounds(args.rounds, args.compare, say)
    if not args.workers_only:
        with tempfile.TemporaryDirectory() as d:
            out["sqlite_webhooks_per_s_1_serve"] = webhooks(str(Path(d, "state.db")), 1, args.seconds)
        for n in (1, 2):
            with Schema() as url:
                out[f"pg_webhooks_per_s_{n}_serve"] = webhooks(url, n, args.seconds)
    out["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    small = out["small_runs_per_s"]
    print(f"{'':34} {'SQLite':>12} {'PostgreSQL':>12}")
    if not args.workers_only:
        rows = [("ms per chained action", "sqlite_ms_per_chained_action", "pg_ms_per_chained_action", ".2f"),
                ("fanned-out actions/s", "sqlite_fanout_actions_per_s", "pg_fanout_actions_per_s", ",.0f")]
        for label, s, pg, fmt in rows:
            print(f"{label:34} {out[s]:>12{fmt}} {out[pg]:>12{fmt}}")
    print(f"{'small runs/s (SQLite: 1 process)':34} {small['sqlite']['median']:>12,.0f}   "
          f"median of {args.rounds} rounds")
    for w in (1, 2, 4):
        extra = f"   (--compare: {small[f'compare_{w}']['median']:,.0f})" if args.compare else ""
        print(f"{f'small runs/s, {w} worker(s)':34} {'':>12} {small[f'this_{w}']['median']:>12,.0f}{extra}")
    if not args.workers_only:
        print(f"{'webhooks/s, 1 serve':34} {out['sqlite_webhooks_per_s_1_serve']:>12,.0f} "
              f"{out['pg_webhooks_per_s_1_serve']:>12,.0f}")
        print(f"{'webhooks/s, 2 serve':34} {'':>12} {out['pg_webhooks_per_s_2_serve']:>12,.0f}")
    before, after = out["load_before"], out["load_after"]
    print(f"(load average {before[0]:.1f} at start, {after[0]:.1f} at end; {out['cpus']} cores)")


if __name__ == "__main__":
    main()
