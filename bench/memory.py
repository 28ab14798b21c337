"""Memory benchmark: peak RSS of whole processes running big loops and many runs.

    python bench/memory.py                 # Foreach of 10k / 100k / 1M Compose items (and result() reads)
    python bench/memory.py --serve 100000  # also: flowrun serve RSS after 1,000 and N small runs

Each case is a fresh process (its own ``VmHWM``: ``ru_maxrss`` would carry the parent's peak over a fork); the baseline beside it is the same
process importing the engine and running a one-action flow, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {root!r})
    import engine
    flow, items_file, state = sys.argv[1:4]
    items = json.load(open(items_file)) if items_file != "-" else None
    t = time.perf_counter()
    result = engine.run_file(flow, input=items, state=state)
    took = time.perf_counter() - t
    print(json.dumps({{"status": str(result.status), "seconds": took,
                      "rss_mb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024}}))
""")

LOOP = """
actions:
  loop:
    type: Foreach
    foreach: "{{ triggerBody() }}"
    concurrency: 50
    actions:
      each: {type: Compose, inputs: "{{ item() }}"}
"""
# the same loop, then templates reading its result(): rows read from the store on demand
READERS = LOOP + """
  n: {type: Compose, inputs: "{{ result('loop')[0].outputs | length }}", runAfter: {loop: [Succeeded]}}
  ends: {type: Compose, runAfter: {loop: [Succeeded]},
         inputs: "{{ [result('loop')[0].outputs[0].outputs, result('loop')[0].outputs[-1].outputs] }}"}
  part: {type: Compose, inputs: "{{ result('loop')[0].outputs[5:8] | map(attribute='outputs') | list }}",
         runAfter: {loop: [Succeeded]}}
  failed: {type: Compose, inputs: "{{ result('loop')[0].outputs | selectattr('status', 'eq', 'Failed') | list }}",
           runAfter: {loop: [Succeeded]}}
outputs:
  count: {value: "{{ result('loop')[0].outputs | length }}"}
"""
ONE = "actions:\n  one: {type: Compose, inputs: 1}\n"
ONE_INPUT = "actions:\n  one: {type: Compose, inputs: \"{{ triggerBody() | length }}\"}\n"


def run_child(folder: Path, flow_text: str, items: list | None) -> dict:
    flow = folder / "flow.yaml"
    flow.write_text(flow_text)
    items_file = "-"
    if items is not None:
        items_file = str(folder / "items.json")
        Path(items_file).write_text(json.dumps(items))
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(flow), items_file,
                          str(folder / "state.db")], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loops(sizes: list[int], readers: bool = True) -> None:
    """Each size beside its own baseline: the same items given to a one-action flow, so the
    input list itself (about 36 MB of Python ints at 1M, held by the trigger) is not counted
    as the loop's growth. With ``readers``, each size again with templates reading its
    ``result('loop')`` after it (length, [0], [-1], a slice, the failed rows, the run's outputs)."""
    with tempfile.TemporaryDirectory() as d:
        base = run_child(Path(d), ONE, None)
    print(f"{'case':<40}{'peak RSS':>10}{'same input, 1 action':>22}{'own':>12}{'items/s':>10}")
    print(f"{'baseline: engine + a one-action run':<40}{base['rss_mb']:>7.0f} MB{'-':>22}{'-':>12}{'-':>10}")
    first = None
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            r = run_child(Path(d), LOOP, list(range(n)))
        with tempfile.TemporaryDirectory() as d:
            b = run_child(Path(d), ONE_INPUT, list(range(n)))
        assert r["status"] == "Succeeded" and b["status"] == "Succeeded", (r, b)
        own = r["rss_mb"] - b["rss_mb"]
        first = first if first is not None else r["rss_mb"]
        growth = (r["rss_mb"] / first - 1) * 100
        print(f"{f'Foreach of {n:,} Compose items':<40}{r['rss_mb']:>7.0f} MB{b['rss_mb']:>19.0f} MB"
              f"{own:>9.0f} MB{n / r['seconds']:>10,.0f}   (+{growth:.0f}% vs the smallest, input included)")
        if readers:
            with tempfile.TemporaryDirectory() as d:
                q = run_child(Path(d), READERS, list(range(n)))
            assert q["status"] == "Succeeded", q
            print(f"{'  + 5 reads of result(loop) after it':<40}{q['rss_mb']:>7.0f} MB{b['rss_mb']:>19.0f} MB"
                  f"{q['rss_mb'] - b['rss_mb']:>9.0f} MB{n / q['seconds']:>10,.0f}   "
                  f"(the loop, then its rows read: length, [0], [-1], a slice, the failed ones)")


UNTIL = """
actions:
  init: {type: InitializeVariable, inputs: {variables: [{name: n, type: integer, value: 0}]}}
  loop:
    type: Until
    runAfter: {init: [Succeeded]}
    expression: "{{ variables('n') >= NUM }}"
    limit: {count: 10000000, timeout: PT1H}
    actions:
      inc: {type: IncrementVariable, inputs: {name: n, value: 1}}
"""
CHILD_FLOW = """
triggers:
  manual: {type: Request, auth: {type: none}}
actions:
  c: {type: Compose, inputs: "{{ triggerBody() }}"}
outputs:
  v: {value: "{{ outputs('c') }}"}
"""
PARENT = """
actions:
  loop:
    type: Foreach
    foreach: "{{ triggerBody() }}"
    concurrency: 20
    actions:
      call: {type: Workflow, inputs: {flow: child.yaml, body: "{{ item() }}"}}
"""


def until_and_children(until_sizes: list[int], child_sizes: list[int]) -> None:
    """Until loops with many iterations, and many child runs (Workflow inside Foreach)."""
    print(f"{'case':<52}{'peak RSS':>10}{'per second':>12}")
    for n in until_sizes:
        with tempfile.TemporaryDirectory() as d:
            r = run_child(Path(d), UNTIL.replace("NUM", str(n)), None)
        assert r["status"] == "Succeeded", r
        print(f"{f'Until of {n:,} iterations (IncrementVariable)':<52}{r['rss_mb']:>7.0f} MB{n / r['seconds']:>12,.0f}")
    for n in child_sizes:
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "child.yaml").write_text(CHILD_FLOW)
            r = run_child(Path(d), PARENT, list(range(n)))
        assert r["status"] == "Succeeded", r
        print(f"{f'{n:,} child runs (Workflow in a Foreach)':<52}{r['rss_mb']:>7.0f} MB{n / r['seconds']:>12,.0f}")


def serve(total: int) -> None:
    """RSS of a flowrun serve process after 1,000 and after ``total`` accepted small runs."""
    import httpx

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "flows").mkdir()
        (folder / "flows" / "small.yaml").write_text(
            "triggers:\n  go: {type: Request, auth: {type: none}}\n"
            "actions:\n  a: {type: Compose, inputs: \"{{ triggerBody() }}\"}\n")
        port = 18000 + os.getpid() % 1000
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(folder / "s.db"), "serve",
                                 "--flows", str(folder / "flows"), "--port", str(port)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    httpx.get(url + "/healthz", timeout=0.5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)

            def rss() -> float:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
                return 0.0

            sent, marks = 0, {}
            with httpx.Client(base_url=url, timeout=10) as client:
                for target in (1000, total):
                    while sent < target:
                        client.post("/flows/small/triggers/go", json={"n": sent})
                        sent += 1
                    time.sleep(1.0)  # let the last runs finish
                    marks[target] = rss()
            print(f"flowrun serve RSS after {1000:,} runs: {marks[1000]:.0f} MB; after {total:,}: "
                  f"{marks[total]:.0f} MB ({(marks[total] / marks[1000] - 1) * 100:+.1f}%)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--serve", type=int, default=0, metavar="N")
    ap.add_argument("--no-readers", action="store_true", help="skip the result('loop') readers case")
    ap.add_argument("--until", default="1000,100000", help="Until iteration counts")
    ap.add_argument("--children", default="200,5000", help="child run counts")
    args = ap.parse_args()
    loops([int(s) for s in args.sizes.split(",")], readers=not args.no_readers)
    until_and_children([int(s) for s in args.until.split(",") if s], [int(s) for s in args.children.split(",") if s])
    if args.serve:
        serve(args.serve)
