"""The dbt child process: ``python -P nodes/dbt/child.py``, started by ``dbt.Command``.

dbt does not support concurrent invocations in one process, and an invocation cannot be
stopped from another thread, so each one runs here, alone. The protocol:

- stdin, line 1: ``{"args": [...], "grace": seconds}`` (JSON);
- stdin then stays open, held by the flowrun process: end of file means flowrun is gone
  (exited or killed with -9). The child then interrupts dbt (SIGINT: dbt cancels its open
  queries), and after ``grace`` seconds kills its whole process group, so no dbt process
  outlives flowrun;
- stdout/stderr: dbt's console log, streamed line by line into the action's log;
- the last stdout line: ``RESULT_MARK + {"success": bool, "exception": str | null, "cut": bool}``
  (``cut``: the exception's text was cut at MAX_EXCEPTION characters).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

RESULT_MARK = "\x1eflowrun-dbt-result "
MAX_EXCEPTION = 2000  # characters of dbt's exception in the verdict line


def _lifeline(grace: float) -> None:
    for _ in sys.stdin:  # nothing more is ever sent: this returns at end of file
        pass
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(grace)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> int:
    spec = json.loads(sys.stdin.readline() or "null")
    if not isinstance(spec, dict) or not isinstance(spec.get("args"), list):
        print("flowrun dbt child: expected a JSON spec on stdin", file=sys.stderr)
        return 2
    # an interrupt must reach dbt even when flowrun was started with SIGINT ignored (nohup, &)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=_lifeline, args=(float(spec.get("grace", 10)),), daemon=True).start()
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke([str(a) for a in spec["args"]])
    exc = result.exception
    text = None if exc is None else f"{type(exc).__name__}: {exc}"
    # the verdict is one line, well under the parent's line limit (MAX_LINE bytes)
    out = {"success": bool(result.success), "exception": text if text is None else text[:MAX_EXCEPTION],
           "cut": text is not None and len(text) > MAX_EXCEPTION}
    sys.stderr.flush()
    print(RESULT_MARK + json.dumps(out, ensure_ascii=False), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # dbt's worker threads (a python model asleep) must not hold the exit
