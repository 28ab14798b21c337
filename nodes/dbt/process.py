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
import anyio.lowlevel
from anyio.abc import Process

from engine.vendor import MASK, secret_forms

from .child import RESULT_MARK

CHILD = Path(__file__).resolve().with_name("child.py")  # run as a script: no flowrun import
MAX_LOG_LINES = 200  # the tail kept for an invocation that fails before run_results.json
MAX_LINE = 16_384  # bytes of one log line kept; the rest of a longer line is dropped
CUT = b" [line cut]"


class Lines:
    """Bytes from a pipe cut into lines, each at most MAX_LINE bytes (memory stays bounded
    whatever the child prints, even one line of gigabytes without a newline)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skipping = False  # inside a line already cut at MAX_LINE

    def feed(self, chunk: bytes) -> list[bytes]:
        out = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not self.skipping:
                room = MAX_LINE - len(self.buffer)
                self.buffer += piece[:room]
                if len(piece) > room:  # the line is too long: keep its start, mark the cut
                    out.append(bytes(self.buffer) + CUT)
                    self.buffer.clear()
                    self.skipping = True
            if end < 0:
                return out
            if not self.skipping:
                out.append(bytes(self.buffer))
            self.buffer.clear()
            self.skipping = False
            start = end + 1

    def close(self) -> list[bytes]:
        rest = [] if self.skipping or not self.buffer else [bytes(self.buffer)]
        self.buffer.clear()
        return rest


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
        lines, mask = Lines(), Masker(secrets)
        async for chunk in proc.stdout:
            for raw in lines.feed(chunk):
                _line(raw, done, mask, log)
            await anyio.lowlevel.checkpoint()  # a flood of lines never starves the loop
        for raw in lines.close():
            _line(raw, done, mask, log)
        done.returncode = await proc.wait()
        done.success = done.success and done.returncode == 0  # the child exits 0 only on success
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


class Masker:
    """Masks every form of the secrets (computed once per invocation, not once per line)."""

    def __init__(self, secrets: tuple[str, ...]):
        self.forms = sorted({f for v in secrets if v for f in secret_forms(v)}, key=len, reverse=True)
        # a line cut at MAX_LINE may end inside a secret: this many characters are dropped
        self.guard = max((len(f) for f in self.forms), default=0)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


def _line(raw: bytes, done: Finished, mask: Masker, log: Any) -> None:
    cut = raw.endswith(CUT)
    if cut:
        raw = raw[:-len(CUT)]
    text = raw.decode("utf-8", "replace").rstrip("\r")
    if text.startswith(RESULT_MARK) and not cut:
        try:
            verdict = json.loads(text[len(RESULT_MARK):])
        except (ValueError, RecursionError):
            verdict = None
        verdict = verdict if isinstance(verdict, dict) else {}
        done.success = verdict.get("success") is True
        exc = verdict.get("exception")
        if isinstance(exc, str):
            exc = mask(exc)
            done.exception = exc[:max(0, len(exc) - mask.guard)] + " ..." if verdict.get("cut") else exc
        return
    text = mask(text)
    if cut:
        text = text[:max(0, len(text) - mask.guard)] + CUT.decode()
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
