"""Benchmark of `flowrun serve`: accepted triggers per second and trigger-to-acknowledgement
latency for a trivial flow, beside the same server's plain /healthz rate.

    .venv/bin/python bench/listener.py                 # about 40 s; prints a table
    .venv/bin/python bench/listener.py --seconds 10 --json

It starts a real `flowrun serve` (uvicorn, durable SQLite state: every trigger's run row is
committed before the 202 is sent, WAL + synchronous=NORMAL as the engine sets it) on
127.0.0.1 with one flow (a Request trigger, auth none, one Compose action, no Response:
the answer is 202 + Location) and drives it from a load generator in a separate process
(a small asyncio HTTP/1.1 client on keep-alive connections; httpx's pool was slower than
the server it was to measure):

1. /healthz, closed loop (N connections as fast as they go): the server's plain HTTP rate;
2. the trigger, closed loop: accepted triggers per second (2xx), and 429s if any;
3. the trigger at a fixed 200 requests/s (open loop, latency measured from the time each
   request was due, so a stall is not hidden): p50 / p99 / max acknowledgement latency.

Between phases it waits until every accepted run has finished. The machine this runs on
is shared by the server, the generator and the runs: on 2 cores the generator's own CPU
is part of what is measured.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW = """\
name: bench
triggers:
  hook:
    type: Request
    auth: {type: none}
    inputs:
      schema: {type: object, required: [id], properties: {id: {type: integer}}}
actions:
  echo:
    type: Compose
    inputs: "{{ triggerBody().id }}"
"""


# -- load generator (runs in its own process) ---------------------------------------------------
# A minimal HTTP/1.1 keep-alive client on asyncio streams. httpx's connection pool costs far
# more CPU per request than the server under test (about 110 req/s at 32 concurrent requests
# here, against 2,900 req/s for one raw connection), so it would measure itself.
class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "_Conn":
        return cls(*await asyncio.open_connection(host, port))

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def _raw(method: str, host: str, path: str, body: bytes | None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def _closed(host: str, port: int, raw: bytes, connections: int, seconds: float) -> dict:
    statuses: dict[int, int] = {}
    lat: list[float] = []
    conns = [await _Conn.open(host, port) for _ in range(connections)]
    deadline = time.perf_counter() + seconds

    async def worker(conn: _Conn) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            code = await conn.request(raw)
            lat.append(time.perf_counter() - t)
            statuses[code] = statuses.get(code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return {"elapsed": elapsed, "statuses": statuses, "latencies": lat}


async def _open(host: str, port: int, raw: bytes, rate: float, seconds: float) -> dict:
    statuses: dict[int, int] = {}
    lat: list[float] = []
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(64):
        idle.put_nowait(await _Conn.open(host, port))

    async def one(due: float) -> None:
        conn = await idle.get()  # waiting for a free connection counts as latency
        code = await conn.request(raw)
        lat.append(time.perf_counter() - due)
        statuses[code] = statuses.get(code, 0) + 1
        idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return {"elapsed": time.perf_counter() - start, "statuses": statuses, "latencies": lat}


def generate(args: argparse.Namespace) -> None:
    from urllib.parse import urlsplit

    u = urlsplit(args.url)
    body = json.dumps({"id": 7}).encode() if args.path != "/healthz" else None
    raw = _raw("GET" if body is None else "POST", u.netloc, args.path, body)
    if args.mode == "closed":
        out = asyncio.run(_closed(u.hostname, u.port, raw, args.connections, args.seconds))
    else:
        out = asyncio.run(_open(u.hostname, u.port, raw, args.rate, args.seconds))
    json.dump(out, sys.stdout)


# -- driver -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _phase(url: str, mode: str, path: str, seconds: float, connections: int = 32, rate: float = 200) -> dict:
    cmd = [sys.executable, __file__, "--generate", "--url", url, "--mode", mode, "--path", path,
           "--seconds", str(seconds), "--connections", str(connections), "--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr}")
    data = json.loads(out.stdout)
    data["statuses"] = {int(k): v for k, v in data["statuses"].items()}
    return data


def _wait_idle(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).json().get("inFlight", 1) == 0:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def drive(args: argparse.Namespace) -> dict:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        flows = Path(tmp, "flows")
        flows.mkdir()
        (flows / "bench.yaml").write_text(FLOW)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        server = subprocess.Popen([sys.executable, "-m", "engine.cli", "--state", str(Path(tmp, "state.db")), "serve",
                                   "--flows", str(flows), "--port", str(port), "--log-level", "warning",
                                   "--max-in-flight", str(args.max_in_flight)],
                                  cwd=tmp, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start:\n" + server.stderr.read().decode()[-3000:])
                time.sleep(0.1)
            trigger = "/flows/bench/triggers/hook"
            _phase(url, "closed", trigger, 2, args.connections)  # warm-up (imports, caches, SQLite pages)
            _wait_idle(url)
            health = _phase(url, "closed", "/healthz", args.seconds, args.connections)
            triggers = _phase(url, "closed", trigger, args.seconds, args.connections)
            _wait_idle(url)
            fixed = _phase(url, "open", trigger, args.seconds * 2, rate=args.rate)
            _wait_idle(url)
            state = httpx.get(url + "/metrics").text
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

    def ok(d: dict) -> int:
        return sum(v for k, v in d["statuses"].items() if 200 <= k < 300)

    finished = sum(float(line.rsplit(" ", 1)[1]) for line in state.splitlines()
                   if line.startswith("flowrun_runs_finished_total") and 'status="Succeeded"' in line)
    return {
        "healthz_per_s": ok(health) / health["elapsed"],
        "healthz_p50_ms": _pct(health["latencies"], .5) * 1000,
        "accepted_per_s": ok(triggers) / triggers["elapsed"],
        "closed_p50_ms": _pct(triggers["latencies"], .5) * 1000,
        "closed_p99_ms": _pct(triggers["latencies"], .99) * 1000,
        "closed_statuses": triggers["statuses"],
        "fixed_rate": args.rate,
        "fixed_sent": sum(fixed["statuses"].values()),
        "fixed_statuses": fixed["statuses"],
        "fixed_p50_ms": _pct(fixed["latencies"], .5) * 1000,
        "fixed_p99_ms": _pct(fixed["latencies"], .99) * 1000,
        "fixed_max_ms": max(fixed["latencies"]) * 1000,
        "runs_succeeded": int(finished),
        "connections": args.connections,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", default="")
    p.add_argument("--mode", default="closed")
    p.add_argument("--path", default="/healthz")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each closed-loop phase")
    p.add_argument("--connections", type=int, default=32, help="closed-loop concurrency")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second of the fixed-rate phase")
    p.add_argument("--max-in-flight", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.generate:
        generate(args)
        return
    r = drive(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    rows = [
        ("GET /healthz, closed loop", f"{r['healthz_per_s']:,.0f} req/s", f"p50 {r['healthz_p50_ms']:.2f} ms", "baseline"),
        ("trigger, closed loop", f"{r['accepted_per_s']:,.0f} accepted/s", f"p50 {r['closed_p50_ms']:.2f} ms, "
         f"p99 {r['closed_p99_ms']:.2f} ms", "target >= 1,000/s"),
        (f"trigger at {r['fixed_rate']:.0f} req/s", f"{r['fixed_sent']} sent, {r['fixed_statuses']}",
         f"p50 {r['fixed_p50_ms']:.2f} ms, p99 {r['fixed_p99_ms']:.2f} ms (max {r['fixed_max_ms']:.1f})",
         "target p99 < 50 ms"),
    ]
    print(f"flowrun serve benchmark ({r['cpus']} CPUs, {r['connections']} connections in closed loops, "
          f"durable commit before each 202)")
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(("phase", "throughput", "latency", ""))))
    for row in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(row)))
    print(f"runs succeeded: {r['runs_succeeded']}; closed-loop statuses {r['closed_statuses']}")


if __name__ == "__main__":
    main()
