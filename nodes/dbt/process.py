"""Running one dbt invocation in a child process, from the event loop.

The child is the leader of a new process group. Its stdin is a lifeline the flowrun process
holds (see ``child.py``); its console output is streamed line by line, secrets masked, to
the action's log. Cancellation (a timeout, Terminate, shutdown) interrupts dbt with SIGINT,
waits ``grace`` seconds for it to cancel its queries, then kills the process group.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import anyio
from anyio.abc import Process

from engine.plugin import scrub

from .child import RESULT_MARK

CHILD = Path(__file__).resolve().with_name("child.py")  # run as a script: no flowrun import
MAX_LOG_LINES = 200  # the tail kept for an invocation that fails before run_results.json


@dataclass
class Finished:
    """What the child reported: its exit code, dbt's own verdict, and the log's tail."""

    returncode: int | None
    success: bool = False
    exception: str | None = None
    tail: list[str] = field(default_factory=list)
    pid: int | None = None


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_dbt(args: list[str], *, env: dict[str, str], cwd: Path, grace: float,
                  secrets: tuple[str, ...], log: Any,
                  on_start: Callable[[int], None] | None = None) -> Finished:
    """Run ``dbt <args>`` in a child process; return when it exits."""
    proc: Process = await anyio.open_process(
        # -P: the script's folder is not put on sys.path (its modules would shadow others)
        [sys.executable, "-P", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, cwd=str(cwd), env=env, start_new_session=True)
    done = Finished(returncode=None, pid=proc.pid)
    if on_start is not None:
        on_start(proc.pid)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        await proc.stdin.send((json.dumps({"args": args, "grace": grace}) + "\n").encode())
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                _line(raw, done, secrets, log)
        if buffer:
            _line(buffer, done, secrets, log)
        done.returncode = await proc.wait()
        return done
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(proc, grace, log)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                await _stop(proc, grace, log)
            _kill_group(proc.pid, signal.SIGKILL)  # anything dbt started and left behind
            await proc.aclose()


def _line(raw: bytes, done: Finished, secrets: tuple[str, ...], log: Any) -> None:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    if text.startswith(RESULT_MARK):
        try:
            verdict = json.loads(text[len(RESULT_MARK):])
        except ValueError:
            verdict = {}
        done.success = bool(verdict.get("success"))
        exc = verdict.get("exception")
        done.exception = scrub(exc, secrets) if isinstance(exc, str) else None
        return
    text = scrub(text, secrets)
    done.tail.append(text)
    if len(done.tail) > MAX_LOG_LINES:
        del done.tail[0]
    if text.strip():
        log.info("dbt: %s", text)


async def _stop(proc: Process, grace: float, log: Any) -> None:
    """SIGINT (dbt cancels its queries), ``grace`` seconds, then SIGKILL to the group."""
    if proc.returncode is not None:
        return
    log.info("interrupting dbt (pid %s); killing it in %ss if it has not exited", proc.pid, grace)
    try:
        proc.send_signal(signal.SIGINT)
    except ProcessLookupError:
        pass
    with anyio.move_on_after(grace):
        await proc.wait()
        return
    log.warning("dbt (pid %s) did not exit %ss after an interrupt: killing its process group",
                proc.pid, grace)
    _kill_group(proc.pid, signal.SIGKILL)
    with anyio.move_on_after(5):
        await proc.wait()
