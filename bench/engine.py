"""Engine benchmark: flowrun with persistence on, beside a floor measured in the same run.

    python bench/engine.py            # prints a table; numbers go into the README
    python bench/engine.py --tracing  # only the chain with OpenTelemetry spans off and on (flowrun[otel])

Floor: a plain asyncio loop doing one SQLite commit per step (WAL, synchronous=NORMAL),
which is the least a durable engine must spend per step.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def floor_ms_per_step(n: int = 5000) -> float:
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(os.path.join(d, "floor.db"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE steps (run_id TEXT, path TEXT, status TEXT, outputs TEXT, PRIMARY KEY (run_id, path))")

        async def main() -> None:
            for i in range(n):
                await asyncio.sleep(0)
                db.execute("INSERT INTO steps VALUES (?, ?, ?, ?)", ("r", f"s{i}", "Succeeded", json.dumps(i)))
                db.commit()

        t = time.perf_counter()
        asyncio.run(main())
        return (time.perf_counter() - t) * 1000 / n


def write_flows(d: Path) -> dict[str, Path]:
    chain = {"actions": {}}
    prev = None
    for i in range(1000):
        a = {"type": "Compose", "inputs": f"{{{{ {i} }}}}"}
        if prev:
            a["runAfter"] = {prev: ["Succeeded"]}
        chain["actions"][f"a{i}"] = a
        prev = f"a{i}"
    foreach = {"actions": {"loop": {"type": "Foreach", "foreach": "{{ range(10000) | list }}", "concurrency": 50,
                                    "actions": {"each": {"type": "Compose", "inputs": "{{ item() }}"}}}}}
    small = {"actions": {"a": {"type": "Compose", "inputs": "{{ triggerBody().n }}"},
                         "b": {"type": "Compose", "inputs": "{{ body('a') + 1 }}", "runAfter": {"a": ["Succeeded"]}},
                         "c": {"type": "Compose", "inputs": "{{ body('b') * 2 }}", "runAfter": {"b": ["Succeeded"]}}}}
    out = {}
    for name, flow in (("chain", chain), ("foreach", foreach), ("small", small)):
        out[name] = d / f"{name}.yaml"
        out[name].write_text(json.dumps(flow))
    return out


def timed_run(path: Path, state: Path) -> tuple[float, object]:
    """Seconds to run one flow to completion (result loaded), with persistence on."""
    import anyio
    from engine.api import Engine

    eng = Engine(state)
    flow = eng.load(path)
    t = time.perf_counter()
    result = anyio.run(lambda: eng.run(flow))
    elapsed = time.perf_counter() - t
    assert result.status == "Succeeded"
    return elapsed, result


def flowrun_chain(path: Path, state: Path) -> float:
    elapsed, result = timed_run(path, state)
    assert len(result.steps) == 1000
    return elapsed * 1000 / 1000


def flowrun_foreach(path: Path, state: Path) -> float:
    elapsed, _ = timed_run(path, state)
    return 10000 / elapsed


def flowrun_small_runs(path: Path, state: Path, n: int = 200) -> float:
    import anyio
    from engine.api import Engine

    eng = Engine(state)
    flow = eng.load(path)

    async def many() -> None:
        for i in range(n):
            r = await eng.run(flow, input={"n": i})
            assert r.status == "Succeeded"

    t = time.perf_counter()
    anyio.run(many)
    return n / (time.perf_counter() - t)


def foreach_peak_memory_mb(path: Path, state: Path) -> float:
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        import engine
        r = engine.run_file({str(path)!r}, state={str(state)!r})
        assert r.status == "Succeeded"
        print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def help_ms(repeats: int = 7) -> tuple[float, float]:
    exe = Path(sys.executable).with_name("flowrun")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]
    times, base = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([*cmd, "--help"], capture_output=True, check=True)
        times.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        base.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), statistics.median(base)


class _Collector:
    """An OTLP/HTTP collector on loopback that reads every POST and throws it away."""

    def __enter__(self) -> "_Collector":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        collector = self
        self.posts = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def tracing_overhead(path: Path, d: Path, rounds: int = 5) -> dict[str, float]:
    """ms per action of the 1,000-action chain with tracing off, with spans made and dropped
    (the SDK's cost), and with spans exported over OTLP/HTTP to a loopback collector (the flush
    after the run counted); the three alternate, best of ``rounds`` each."""
    import anyio
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from engine import telemetry
    from engine.api import Engine

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    out: dict[str, list[float]] = {"off": [], "spans": [], "otlp": []}
    with _Collector() as collector:
        for r in range(rounds):
            for mode in out:
                provider = None
                if mode == "off":
                    telemetry.disable()
                else:
                    provider = TracerProvider()
                    exporter = Drop() if mode == "spans" else OTLPSpanExporter(endpoint=collector.url + "/v1/traces")
                    provider.add_span_processor(BatchSpanProcessor(exporter))
                    telemetry.enable(provider)
                eng = Engine(d / f"trace-{mode}-{r}.db")
                flow = eng.load(path)
                t = time.perf_counter()
                result = anyio.run(lambda: eng.run(flow))
                if provider is not None:
                    provider.force_flush()
                elapsed = time.perf_counter() - t
                assert result.status == "Succeeded"
                eng.close()
                if provider is not None:
                    provider.shutdown()
                out[mode].append(elapsed)
        assert collector.posts > 0
    telemetry.reset()
    return {mode: min(v) * 1000 / 1000 for mode, v in out.items()}


def tracing_rows(path: Path, d: Path) -> list[tuple[str, str, str]]:
    t = tracing_overhead(path, d)
    return [("chain of 1,000, tracing off (same run)", f"{t['off']:.3f} ms/action", "-"),
            ("  spans made, export dropped", f"{t['spans']:.3f} ms/action (+{(t['spans'] / t['off'] - 1) * 100:.0f}%)",
             "-"),
            ("  spans exported, OTLP/HTTP to loopback", f"{t['otlp']:.3f} ms/action "
             f"(+{(t['otlp'] / t['off'] - 1) * 100:.0f}%)", "-")]


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'flowrun':<40} target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<40} {target}")


def main() -> None:
    if "--tracing" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as d:
            print_rows(tracing_rows(write_flows(Path(d))["chain"], Path(d)))
        return
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        flows = write_flows(d)
        floor = floor_ms_per_step()
        chain = min(flowrun_chain(flows["chain"], d / f"chain{i}.db") for i in range(3))
        foreach = max(flowrun_foreach(flows["foreach"], d / f"fe{i}.db") for i in range(2))
        runs = flowrun_small_runs(flows["small"], d / "small.db")
        memory = foreach_peak_memory_mb(flows["foreach"], d / "mem.db")
        help_time, python_start = help_ms()
    rows = [
        ("floor: asyncio + 1 SQLite commit per step", f"{floor:.3f} ms/step", "-"),
        ("chain of 1,000 Compose", f"{chain:.3f} ms/action ({chain / floor:.1f}x floor)", "<= 0.3 ms, <= 4x floor"),
        ("Foreach 10,000 items, concurrency 50", f"{foreach:,.0f} item-actions/s", ">= 5,000/s"),
        ("200 small runs (3 actions) back to back", f"{runs:,.0f} runs/s", ">= 100/s"),
        ("peak memory, Foreach case", f"{memory:.0f} MB", "< 300 MB"),
        ("flowrun --help", f"{help_time:.0f} ms (bare python: {python_start:.0f} ms)", "< 300 ms"),
    ]
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        pass
    else:
        with tempfile.TemporaryDirectory() as d:
            rows += tracing_rows(write_flows(Path(d))["chain"], Path(d))
    print_rows(rows)
    print("reference (issue #2, same machine): Prefect 3.8 ~12 ms/task chained, ~30 ms/task fanned out, ~1.5 s/flow run")


if __name__ == "__main__":
    main()
