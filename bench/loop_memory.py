"""Peak RSS of a big Foreach through run, resume (after kill -9 mid-loop) and rerun, each in its
own process (issue 15; not a CI test: minutes at 200,000 items). ``python bench/loop_memory.py
[ITEMS] [--result]``; ``--result`` adds ``result('loop')`` after the loop."""
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = """name: big
triggers: {manual: {type: Manual}}
actions:
  loop:
    type: Foreach
    foreach: "{{ triggerBody() }}"
    concurrency: 50
    actions:
      c: {type: Compose, inputs: "{{ item() * 2 }}"}
  after: {type: Compose, runAfter: {loop: [Succeeded]}, inputs: "%s"}
outputs:
  last: {value: "{{ outputs('after') }}"}
"""
CHILD = """import resource, sys, anyio
from engine.api import Engine
mode, state, arg = sys.argv[1:4]
e = Engine(state)
if mode == "run":
    r = anyio.run(lambda: e.run(sys.argv[4], input=list(range(int(arg)))))
elif mode == "resume":
    r = anyio.run(lambda: e.resume(arg))
else:
    r = anyio.run(lambda: e.rerun(arg, "c"))
print(r.status, int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) // 1024)
"""


def child(*args: str) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return out.stdout.split()[-2:]


def main() -> None:
    n = int(next((a for a in sys.argv[1:] if a.isdigit()), 200_000))
    expr = "{{ result('loop') | length }}" if "--result" in sys.argv else "{{ outputs('c') }}"
    with tempfile.TemporaryDirectory() as tmp:
        flow, state = Path(tmp) / "big.yaml", str(Path(tmp) / "state.db")
        flow.write_text(FLOW % expr)
        t = time.time()
        print("run", *child("run", state, str(n), str(flow)), "MB", f"{time.time() - t:.0f}s")
        proc = subprocess.Popen([sys.executable, "-c", CHILD, "run", state + "2", str(n), str(flow)])
        db = sqlite3.connect(state + "2")
        while True:  # kill -9 half way through the loop
            time.sleep(0.5)
            try:
                if db.execute("SELECT COUNT(*) FROM steps").fetchone()[0] > n:
                    break
            except sqlite3.OperationalError:
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run_id = db.execute("SELECT id FROM runs").fetchone()[0]
        t = time.time()
        print("resume", *child("resume", state + "2", run_id), "MB", f"{time.time() - t:.0f}s")
        t = time.time()
        print("rerun --from c", *child("rerun", state + "2", run_id), "MB", f"{time.time() - t:.0f}s")
    print("this process", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "MB max child")


if __name__ == "__main__":
    main()
