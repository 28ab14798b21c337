"""snowflake.Query returning 100,000 rows through fakesnow (server mode on loopback).

    python bench/snowflake.py [--rows 100000]

Two fresh processes, each against the same fakesnow server, measured in the same run:
- baseline: the raw connector (qmark binding, execute + fetchall of the same query);
- flowrun: ``engine.run_file`` of a one-action flow (snowflake.Query, maxRows = rows), state
  persisted: the result (over the 1 MB blob threshold) is offloaded to the blob store and the
  step row holds a reference.
Each prints rows/s and its peak RSS (VmHWM). Target: flowrun's peak RSS under 300 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is bench/snowflake.py: its folder must not shadow the `snowflake` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

SQL = "SELECT id, name, amount, day, payload FROM big ORDER BY id"
HWM = 'int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024'

RAW = textwrap.dedent(f"""
    import json, sys, time
    import snowflake.connector
    port = int(sys.argv[1])
    conn = snowflake.connector.connect(user="bench", password="x", account="fakesnow", host="127.0.0.1",
                                       port=port, protocol="http", database="BENCH", schema="S", paramstyle="qmark")
    t = time.perf_counter()
    cur = conn.cursor()
    cur.execute({SQL!r})
    rows = cur.fetchall()
    took = time.perf_counter() - t
    print(json.dumps({{"rows": len(rows), "seconds": took, "rss_mb": {HWM}}}))
""")

FLOWRUN = textwrap.dedent(f"""
    import json, sys, time
    sys.path.insert(0, {str(ROOT)!r})
    import engine
    flow, conns, state = sys.argv[1:4]
    t = time.perf_counter()
    result = engine.run_file(flow, state=state, connections=conns)
    took = time.perf_counter() - t
    out = result.steps["q"].outputs or {{}}
    print(json.dumps({{"status": str(result.status), "rows": out.get("rowCount"), "seconds": took,
                      "error": result.error, "rss_mb": {HWM}}}))
""")


def child(code: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    import snowflake.connector

    from tests.support.snowflake import FakeSnowflake

    fake = FakeSnowflake().start()
    conn = snowflake.connector.connect(user="setup", password="x", account="fakesnow", host="127.0.0.1",
                                       port=fake.port, protocol="http")
    cur = conn.cursor()
    cur.execute("CREATE DATABASE BENCH")
    cur.execute("CREATE SCHEMA BENCH.S")
    cur.execute("USE SCHEMA BENCH.S")
    cur.execute(f"CREATE TABLE big AS SELECT range AS id, 'customer ' || range AS name, "
                f"(range * 1.25)::NUMBER(12,2) AS amount, DATEADD(day, range % 365, DATE '2024-01-01') AS day, "
                f"'{{\"k\": ' || range || '}}' AS payload FROM range({args.rows})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "connections.yaml").write_text(json.dumps({"connections": {"snowflake": {
            "kind": "snowflake", "endpoint": fake.endpoint,
            "settings": {"account": "fakesnow", "user": "bench", "database": "BENCH", "schema": "S"},
            "secrets": {"password": "BENCH_SNOWFLAKE_PASSWORD"}}}}))
        (folder / "flow.yaml").write_text(json.dumps({"actions": {"q": {
            "type": "snowflake.Query", "connection": "snowflake",
            "inputs": {"sql": SQL, "maxRows": args.rows}}}}))
        env = {**os.environ, "BENCH_SNOWFLAKE_PASSWORD": "x"}
        raw = child(RAW, str(fake.port))
        ours = child(FLOWRUN, str(folder / "flow.yaml"), str(folder / "connections.yaml"),
                     str(folder / "state.db"), env=env)
        blob_dir = folder / "state.db.blobs"
        blobs = [b.stat().st_size for b in blob_dir.glob("*.json")] if blob_dir.exists() else []
    fake.stop()
    print(f"{args.rows:,} rows through fakesnow (server mode, loopback)")
    print(f"| case | rows/s | peak RSS |\n|---|---|---|")
    print(f"| raw connector: execute + fetchall (baseline) | {raw['rows'] / raw['seconds']:,.0f} | {raw['rss_mb']:.0f} MB |")
    print(f"| snowflake.Query, state + blob offload on | {ours['rows'] / ours['seconds']:,.0f} | {ours['rss_mb']:.0f} MB |"
          if ours.get("rows") else f"| snowflake.Query | failed: {ours} | |")
    print(f"blob store: {len(blobs)} blob(s), {sum(blobs) / 1e6:.1f} MB; "
          f"target peak RSS < 300 MB: {'met' if ours['rss_mb'] < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
