"""`flowrun test` and `flowrun plan` (thin: heavy imports happen inside the commands)."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from engine.clierrors import Fail, guard


def _emit(text: str, *, err: bool = False) -> None:
    from engine.connections import PROCESS_REDACTOR

    click.echo(PROCESS_REDACTOR(text), err=err)


@click.command("test")
@click.argument("paths", nargs=-1)
@click.option("--record", is_flag=True, help="run un-mocked vendor calls against the real (or sandbox) "
                                              "endpoints and store them, redacted, as cassettes for later runs")
@click.option("--junit-xml", "junit_xml", type=click.Path(dir_okay=False, writable=True), default=None,
              metavar="FILE", help="also write the results as JUnit XML")
@click.option("-k", "only", default=None, metavar="TEXT", help="only the tests whose name holds TEXT")
@click.pass_context
@guard
def test(ctx: click.Context, paths: tuple[str, ...], record: bool, junit_xml: str | None, only: str | None) -> None:
    """Run flow tests (*.test.yaml beside the flows; default: the current folder): a line per test,
    exit 1 when one fails.

    Each test is one real run of its flow with the test's mocks answering for the actions they
    name, the network blocked (or replayed from the test file's cassette) and a virtual clock."""
    from .runner import run_files

    def line(result: Any) -> None:
        _emit(result.line())

    results = run_files(list(paths) or ["."], record=record, connections=ctx.find_root().obj["connections"],
                        only=only, on_result=line)
    if junit_xml:
        from .junit import write

        try:
            write(results, junit_xml)
        except OSError as exc:  # a folder that does not exist, or that this user may not write in
            raise Fail(f"--junit-xml {junit_xml}: cannot write it ({exc.strerror or type(exc).__name__})") from None
    passed = sum(r.passed for r in results)
    errors = sum(1 for r in results if r.error)
    failed = len(results) - passed - errors
    summary = f"{passed} passed, {failed} failed" + (f", {errors} error(s)" if errors else "")
    _emit(summary, err=True)
    if not results:
        raise Fail(f"no tests matched -k {only!r}" if only else "no tests found")
    if passed != len(results):
        sys.exit(1)


@click.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option("--input", "input_", metavar="JSON|@FILE|@-", help="the trigger body (@- reads standard input)")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="set a flow parameter")
@click.option("--test", "test_ref", metavar="FILE[::NAME]",
              help="take mocks (and, without --input, the input and parameters) from a test of a test file")
@click.option("--json", "as_json", is_flag=True, help="the plan as JSON")
@click.option("--effects-only", is_flag=True, help="only the side effects, numbered, one line each")
@click.pass_context
@guard
def plan(ctx: click.Context, flow: str, input_: str | None, params: tuple[str, ...], test_ref: str | None,
         as_json: bool, effects_only: bool) -> None:
    """Dry-run a flow, with no network: every action that would run, in order, with its inputs
    rendered from the payload, the branches conditions would take (of a loop, the first
    iteration), and the side effects. Actions with a side effect or a vendor connection do not
    run: a test's mocks, or the node's example outputs, stand in for them."""
    import shutil
    import tempfile
    from pathlib import Path

    import anyio

    from engine.api import Engine
    from engine.cli import _parse_input, _parse_params
    from engine.clock import VirtualClock
    from engine.dryrun import dry_run
    from engine.registry import default_registry

    from .runner import _secrets_env

    if not Path(flow).is_file():
        raise Fail(f"no flow file {flow}")
    root = ctx.find_root().obj
    body, values = _parse_input(input_), _parse_params(params)
    mocks = None
    if test_ref:
        from .files import load

        file, _, name = test_ref.partition("::")
        if not Path(file).is_file():
            raise Fail(f"--test: no test file {file}")
        loaded = load(file, default_registry())
        chosen = [t for t in loaded.tests if not name or t.name == name]
        if not chosen:
            raise Fail(f"--test: {file} has no test '{name}' (it has: {', '.join(t.name for t in loaded.tests)})")
        mocks = chosen[0].mocks
        if input_ is None:
            body = chosen[0].input
            values = {**chosen[0].parameters, **values}
    folder = tempfile.mkdtemp(prefix="flowrun-plan-")
    engine = Engine(Path(folder) / "state.db", connections=root["connections"], clock=VirtualClock())
    try:
        loaded_flow = engine.load(flow)
        unknown = sorted(a for a in mocks or {} if a not in loaded_flow.actions)
        if unknown:  # the test of another flow: its mocks would stand in for nothing, silently
            raise Fail(f"--test: {file} mocks {', '.join(repr(a) for a in unknown[:10])}, which {flow} does not "
                       "have (a test of another flow?)")
        if input_ is not None:
            from engine.validation import check_body

            problems = check_body(loaded_flow, engine.registry, body)
            if problems:
                raise Fail("--input does not match the trigger's schema (serve would answer 400):\n  "
                           + "\n  ".join(problems))
        engine.connections_for(loaded_flow.file).resolve(loaded_flow.connections_used(), engine.redactor,
                                                         env=_secrets_env(engine, loaded_flow, record=False))
        result = anyio.run(lambda: dry_run(engine, loaded_flow, input=body, params=values, mocks=mocks))
    finally:
        engine.close()
        shutil.rmtree(folder, ignore_errors=True)
    if as_json:
        _emit(json.dumps(result.as_dict(), indent=2, default=str))
        return
    _emit("\n".join(result.lines(effects_only=effects_only)))
