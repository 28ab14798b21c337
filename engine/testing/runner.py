"""Runs flow tests: each test is one real run of its flow, on a fresh state database, with the
test's mocks answering at the node boundary, the network blocked (or a cassette replaying, or,
under ``--record``, recording), and a virtual clock (a Wait takes no time). Then its
expectations are checked against what the run did.

    results = run_files(["flows/"], record=False)      # [TestResult], one per test
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import anyio

from ..errors import ActionError, CassetteError, FlowError, FlowrunError
from ..frames import Frame
from ..standins import Boundary, StandIn, pick
from .cassettes import Cassette, Transports, cassette_path
from .files import FlowTest, TestFile, load, test_files
from .network import ACTION, NetworkGuard

PLACEHOLDER = "flowrun-test-secret-"  # a secret's stand-in when its variable is not set (replay, mocks)


@dataclass
class TestResult:
    __test__ = False  # not a pytest class

    test: str  # file::name
    file: str
    name: str
    passed: bool
    seconds: float
    failures: list[str] = field(default_factory=list)
    error: str | None = None  # the test could not run (a problem in its file or its flow)
    run_id: str | None = None
    notes: list[str] = field(default_factory=list)  # what --record ran but could not record

    def line(self) -> str:
        """The test's line and its detail lines, indented. Test names and failures quote text a
        test file or a payload chose: each is one printable line, so a newline cannot print a
        PASS line of its own and an ANSI escape or bidi override cannot reach the terminal or CI log."""
        from ..inspection import one_line

        mark = "PASS" if self.passed else ("ERROR" if self.error else "FAIL")
        head = f"{mark} {one_line(self.test, 500)} ({self.seconds:.2f}s)"
        detail = self.error.splitlines() if self.error else self.failures
        return head + "".join(f"\n    {one_line(d, 2000)}" for d in detail if d.strip()) + \
            "".join(f"\n    note: {one_line(n, 2000)}" for n in self.notes)


UNSEEN = {"native": "its SDK's own native sockets", "subprocess": "a child process"}


def unseen(node: Any, name: str, child_flow: str | None = None) -> str:
    """Why an action whose transport the guard cannot see may not run in a flow test, and the
    remedy (in a child flow, which a test's mocks do not reach: mock the action that runs it)."""
    how = UNSEEN.get(node.transport, f"a {node.transport} transport")
    where = f" of the child flow {child_flow}" if child_flow else ""
    remedy = ("mock the Workflow action that runs that flow in the test file" if child_flow
              else f"mock it in the test file: mocks: {{{name}: {{outputs: ...}}}}")
    return f"action '{name}' ({node.type}){where} reaches outside through {how}, which flowrun test can " \
           f"neither block nor record: {remedy}"


class TestBoundary(Boundary):
    """A test's node boundary: its mocks answer for the actions they name (of the flow under
    test); other actions run, with the network guard watching them."""

    __test__ = False

    def __init__(self, flow: Any, mocks: dict[str, StandIn | list[StandIn]], guard: NetworkGuard | None,
                 cassette: Cassette | None):
        self.flow = flow
        self.mocks = mocks
        self.guard = guard
        self.cassette = cassette
        self.runtime: Any = None  # the run under test, as it ran (its variables, its results)
        self.refused: list[str] = []  # actions the guard could not see, refused before they ran
        self.unrecorded: list[str] = []  # the same, run for real under --record (not in the cassette)

    def stand_in(self, node: Any, inputs: Any, ctx: Any) -> StandIn | None:
        runtime = ctx._runtime
        if runtime.flow is self.flow:
            if self.runtime is None:
                self.runtime = runtime
            entry = self.mocks.get(ctx.action.name)
            if entry is not None:
                return pick(entry, ctx.path)
        return super().stand_in(node, inputs, ctx)

    async def dispatch(self, node: Any, inputs: Any, ctx: Any) -> Any:
        answer = self.stand_in(node, inputs, ctx)
        if answer is not None:
            return answer.answer()
        if not node.guard_sees():
            self._unseen(node, ctx)
        token = ACTION.set(ctx.path)
        try:
            outputs = await node.run(inputs, ctx)
        except Exception:
            self._refused(ctx)  # the network's refusal, not the SDK's reading of it
            raise
        finally:
            ACTION.reset(token)
        self._refused(ctx)
        return outputs

    def _unseen(self, node: Any, ctx: Any) -> None:
        """An un-mocked action the guard cannot see: refused before it runs; under ``--record``
        it runs for real, and the test says it was not recorded (a replay would refuse it)."""
        flow = ctx._runtime.flow
        why = unseen(node, ctx.action.name, None if flow is self.flow else Path(flow.file).name)
        if self.guard is None:
            note = (f"action '{ctx.path}' ({node.type}) ran for real through {UNSEEN.get(node.transport, node.transport)}"
                    f" and was NOT recorded: replay will refuse it; mock it in the test file")
            if note not in self.unrecorded:
                self.unrecorded.append(note)
            return
        if why not in self.refused:
            self.refused.append(why)
        raise ActionError(why, code="NetworkBlocked")

    def _refused(self, ctx: Any) -> None:
        """An action that tried the network (blocked) or missed its cassette fails, naming why,
        and is not retried."""
        tried = self.guard.tried(ctx.path) if self.guard is not None else []
        if tried:
            raise ActionError(f"{tried[0]}: the network is blocked in flowrun test; mock '{ctx.action.name}' "
                              "(mocks:) or record a cassette (flowrun test --record)", code="NetworkBlocked")
        missed = [m for a, m in (self.cassette.problems if self.cassette else []) if a == ctx.path]
        if missed:
            raise ActionError(missed[0], code="CassetteMiss")


class Outcome(Frame):
    """What assertions see: the run's workflow functions as they stood at its end, plus
    ``run()`` (status, outputs, error, response) and ``response()``."""

    __slots__ = ("run_record",)

    def __init__(self, runtime: Any, run: Any):
        super().__init__(runtime, None, "")
        self.run_record = run

    def names(self, functions: tuple[str, ...]) -> dict:
        names = dict(super().names(functions))
        run = self.run_record
        names["run"] = lambda: {"status": str(run.status), "outputs": run.outputs, "error": run.error,
                                "response": run.response, "id": run.id}
        names["response"] = lambda: run.response
        return names


def _secrets_env(engine: Any, flow: Any, record: bool) -> dict[str, str]:
    """The environment connections resolve from: the real one, and (unless recording) a
    placeholder for each secret whose variable is not set, so a mocked or replayed test needs
    no credentials."""
    import os

    env = dict(os.environ)
    if record:
        return env
    conns = engine.connections_for(flow.file)
    for name in flow.connections_used():
        entry = conns.specs.get(name) or {}
        for var in (entry.get("secrets") or {}).values():
            if not env.get(var):
                env[var] = PLACEHOLDER + var.lower()
    return env


def _run_one(test: FlowTest, file: TestFile, *, record: bool, cassette: Cassette | None,
             connections: str | None, registry: Any) -> tuple[Any, list[str], list[str]]:
    """One test: a fresh engine on a throw-away state database, closed once its loop has ended
    (so no commit is left scheduled on a closed store). Returns the run, its failures, and its
    notes (what ``--record`` ran but could not record)."""
    from ..api import Engine
    from ..clock import VirtualClock

    folder = tempfile.mkdtemp(prefix="flowrun-test-")
    engine = Engine(Path(folder) / "state.db", connections=connections, registry=registry, clock=VirtualClock())
    guard = None if record else NetworkGuard()
    try:
        flow = engine.load(file.flow_file)
        conns = engine.connections_for(flow.file)
        conns.resolve(flow.connections_used(), engine.redactor, env=_secrets_env(engine, flow, record))
        boundary = TestBoundary(flow, test.mocks, guard, cassette)
        engine.boundary = boundary
        trigger = test.trigger
        outputs = {"body": test.input, "headers": {}, "queries": {}, "relativePathParameters": {},
                   **{k: v for k, v in trigger.items() if k != "name"}}
        with guard if guard is not None else _nothing():
            run = anyio.run(lambda: engine.run(flow, params=test.parameters, trigger=trigger.get("name"),
                                               trigger_outputs=outputs))
        engine.flush()
        steps = engine.steps(run.id)
        return run, check(test, flow, run, steps, boundary, engine), [engine.redactor(n) for n in boundary.unrecorded]
    finally:
        engine.close()
        shutil.rmtree(folder, ignore_errors=True)


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _runtime_for(boundary: TestBoundary, engine: Any, flow: Any, run: Any, steps: list) -> Any:
    """The runtime of the run under test; when no action of it reached the boundary (only
    containers and skipped actions), one rebuilt from the stored steps."""
    if boundary.runtime is not None:
        return boundary.runtime
    from ..executor import Runtime

    runtime = Runtime(engine=engine, flow=flow, run_id=run.id, trigger={"name": run.trigger,
                      "outputs": run.payload or {}}, params=run.params or {}, connections={})
    for step in steps:
        if step.type != "Iteration" and step.action in flow.actions:
            runtime.latest[step.action] = Runtime._result_of(step)
    return runtime


def check(test: FlowTest, flow: Any, run: Any, steps: list, boundary: TestBoundary, engine: Any) -> list[str]:
    """Every expectation of ``test`` the run did not meet, one line each."""
    failures: list[str] = []
    expect = test.expect
    if boundary.guard is not None:
        for attempt in boundary.guard.attempts:
            failures.append(f"{attempt}: the network is blocked in flowrun test (mock it, or record a "
                            "cassette with flowrun test --record)")
    failures += boundary.refused
    if boundary.cassette is not None:
        failures += [m for _, m in boundary.cassette.problems]
    want = expect.get("status")
    if want is not None and str(run.status) != want:
        why = f": {run.error.get('message')}" if isinstance(run.error, dict) and run.error.get("message") else ""
        failures.append(f"the run ended {run.status}, expected {want}{why}")
    latest: dict[str, Any] = {}
    for step in steps:  # the last of each action (a loop's last iteration)
        if step.type != "Iteration":
            latest[step.action] = step
    for action, status in (expect.get("actions") or {}).items():
        step = latest.get(action)
        got = str(step.status) if step is not None else "not run"
        if got != status:
            why = f" ({step.error.get('message')})" if step is not None and isinstance(step.error, dict) \
                and step.error.get("message") else ""
            failures.append(f"action '{action}' ended {got}, expected {status}{why}")
    for name, value in (expect.get("outputs") or {}).items():
        got = (run.outputs or {}).get(name) if isinstance(run.outputs, dict) else None
        if got != value:
            failures.append(f"output '{name}' is {_show(got)}, expected {_show(value)}")
    if "response" in expect:
        response = run.response
        if response is None:
            failures.append("the run sent no Response")
        else:
            for key, value in expect["response"].items():
                if response.get(key) != value:
                    failures.append(f"response {key} is {_show(response.get(key))}, expected {_show(value)}")
    if "error" in expect:
        for key, value in expect["error"].items():
            got = (run.error or {}).get(key) if isinstance(run.error, dict) else None
            if got != value:
                failures.append(f"run error {key} is {_show(got)}, expected {_show(value)}")
    if expect.get("that") or expect.get("values"):
        scope = Outcome(_runtime_for(boundary, engine, flow, run, steps), run)
        for expr in expect.get("that") or []:
            ok, got = _evaluate(engine, expr, scope)
            if not ok:
                failures.append(f"{expr}: {got}")
            elif got is not True:
                failures.append(f"{expr} is {_show(got)}, expected true")
        for expr, value in (expect.get("values") or {}).items():
            ok, got = _evaluate(engine, expr, scope)
            if not ok:
                failures.append(f"{expr}: {got}")
            elif got != value:
                failures.append(f"{expr} is {_show(got)}, expected {_show(value)}")
    return [engine.redactor(f) for f in failures]


def _evaluate(engine: Any, expr: str, scope: Any) -> tuple[bool, Any]:
    try:
        return True, engine.evaluator.evaluate(expr, scope)
    except ActionError as exc:
        return False, exc.message


def _show(value: Any) -> str:
    import json

    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def run_files(paths: list[str] | tuple[str, ...], *, record: bool = False, connections: str | None = None,
              only: str | None = None, on_result: Callable[[TestResult], None] | None = None) -> list[TestResult]:
    """Run every test of the test files under ``paths`` (``only``: the tests whose name holds it).
    Problems in a test file are one ERROR result per file, at their lines."""
    from ..connections import PROCESS_REDACTOR
    from ..registry import default_registry

    registry = default_registry()
    results: list[TestResult] = []

    def report(result: TestResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    files = test_files(paths)
    if not files:
        raise FlowrunError(f"no test files (*.test.yaml) under {', '.join(map(str, paths))}")
    for path in files:
        started = time.perf_counter()
        try:
            loaded = load(path, registry, _connections(path, connections, registry))
            cassette_file = cassette_path(path)
            recorded = {} if record else Cassette.read_file(cassette_file)
        except (FlowError, CassetteError, FlowrunError) as exc:
            text = "\n    ".join(str(p) for p in exc.problems) if isinstance(exc, FlowError) else str(exc)
            report(TestResult(f"{path}", str(path), "", False, time.perf_counter() - started,
                              error=PROCESS_REDACTOR(text)))
            continue
        new_recordings: dict[str, dict] = {}
        for test in loaded.tests:
            if only and only not in test.name:
                continue
            started = time.perf_counter()
            cassette = None
            if record:
                cassette = Cassette(redact=PROCESS_REDACTOR)
            elif test.name in recorded:
                cassette = Cassette(recorded[test.name], redact=PROCESS_REDACTOR)
            try:
                # no cassette: nothing to record or replay, the guard alone refuses the network
                taps = _nothing() if cassette is None else Transports(lambda c=cassette: ("record" if record
                                                                                          else "replay", c))
                with taps:
                    run, failures, notes = _run_one(test, loaded, record=record, cassette=cassette,
                                             connections=connections, registry=registry)
            except FlowrunError as exc:
                report(TestResult(test.id, test.file, test.name, False, time.perf_counter() - started,
                                  error=PROCESS_REDACTOR(f"{test.file}:{test.line}: {exc}")))
                continue
            if record and cassette is not None and cassette.calls:
                new_recordings[test.name] = cassette.calls
            report(TestResult(test.id, test.file, test.name, not failures, time.perf_counter() - started,
                              failures=[f"{test.file}:{test.line}: {f}" for f in failures], run_id=run.id,
                              notes=notes))
        if record and new_recordings:
            with Cassette.locked(cassette_path(path)):  # another --record of this file merges after us
                kept = _keep_other_recordings(cassette_path(path), loaded)
                Cassette.write_file(cassette_path(path), {**kept, **new_recordings}, PROCESS_REDACTOR)
    return results


def _keep_other_recordings(path: Path, loaded: TestFile) -> dict:
    try:
        old = Cassette.read_file(path)
    except CassetteError:
        return {}
    names = {t.name for t in loaded.tests}
    return {k: v for k, v in old.items() if k in names}


def _connections(path: Path, given: str | None, registry: Any) -> Any:
    from .. import connections as conns

    cfile = given or conns.find_file(path)
    return conns.Connections.load(cfile, registry) if cfile else None
