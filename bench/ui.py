"""Web UI pages on a big state database, beside the CLI reading the same data in the same run.

    python bench/ui.py [--runs 50000] [--items 20000] [--rounds 5]

The state holds --runs runs of a small flow (started, not executed: rows like any run's) and
one run of a Foreach over --items items. Timed, in process (Starlette's TestClient, so HTTP
parsing is not counted; rendering and redaction are):
  - GET /ui/runs (first page, counts by status) beside engine.list_runs(limit=50), what
    `flowrun runs` reads;
  - GET /ui/runs?status=Failed&q=7 (filters) beside the same list with flow/status;
  - GET /ui/runs/{big run} beside `flowrun show` of it (inspection.text_lines, loop summarised).
Median of --rounds, in ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SMALL = "name: small\ntriggers:\n  manual: {type: Request, auth: {type: none}}\nactions:\n  a: {type: Compose, inputs: 1}\n"
BIG = ("name: big\ntriggers:\n  manual: {type: Request, auth: {type: none}}\nactions:\n  each:\n    type: Foreach\n"
       "    foreach: \"{{ range(%d) | list }}\"\n    concurrency: 50\n    actions:\n"
       "      one: {type: Compose, inputs: \"{{ item() }}\"}\n")


def timed(fn, rounds: int) -> float:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import anyio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from engine.api import Engine
    from engine.inspection import text_lines
    from engine.listener.app import Listener, Options, build_app

    with tempfile.TemporaryDirectory() as tmp:
        flows = Path(tmp) / "flows"
        flows.mkdir()
        (flows / "small.yaml").write_text(SMALL)
        (flows / "big.yaml").write_text(BIG % args.items)
        engine = Engine(Path(tmp) / "state.db")
        small = engine.load(flows / "small.yaml")
        for i in range(args.runs):
            engine.start(small, input={"i": i}, commit=False, dedupe_key=f"k{i}")
        engine.flush()
        big = anyio.run(lambda: engine.run(engine.load(flows / "big.yaml")))
        listener = Listener(engine, Options(flows=str(flows), admin_token="bench-token-0123456789"))
        listener.load()
        headers = {"Authorization": "Bearer bench-token-0123456789"}
        with TestClient(build_app(listener)) as client:
            def get(url: str):
                return lambda: client.get(url, headers=headers).raise_for_status()
            rows = [
                ("runs list, first page", get("/ui/runs"), lambda: engine.list_runs(limit=50)),
                ("runs list, status + text filter", get("/ui/runs?status=Failed&q=7"),
                 lambda: engine.list_runs(flow="small", status="Failed", limit=50)),
                (f"run page, Foreach of {args.items:,}", get(f"/ui/runs/{big.id}"),
                 lambda: list(text_lines(engine.store, engine.result(big.id)))),
            ]
            print(f"state: {args.runs:,} runs + 1 run of {args.items:,} iterations; median of {args.rounds}, ms")
            print("| page | web UI | CLI, same data (baseline) |\n|---|---|---|")
            for name, ui, cli in rows:
                print(f"| {name} | {timed(ui, args.rounds):.1f} | {timed(cli, args.rounds):.1f} |")
        engine.close()


if __name__ == "__main__":
    main()
