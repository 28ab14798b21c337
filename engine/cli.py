"""The ``flowrun`` command: a thin layer over engine.api. Heavy imports happen inside commands."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from .clierrors import Fail, guard
from .state import RUNNING, Status

STATE_HELP = ("state database: a SQLite file or a postgresql:// URL (default .flowrun/state.db, "
              "or $FLOWRUN_STATE)")
STATUS_STYLE = {Status.SUCCEEDED: "green", Status.FAILED: "red", Status.TIMEDOUT: "red",
                Status.CANCELLED: "yellow", Status.SKIPPED: "dim", Status.RUNNING: "cyan", Status.QUEUED: "cyan"}


def _engine(ctx: click.Context) -> Any:
    from .api import Engine

    obj = ctx.find_root().obj
    if obj.get("engine") is None:
        obj["engine"] = Engine(obj["state"], connections=obj["connections"], concurrency=obj["concurrency"])
    return obj["engine"]


def wait_for_store(open_: Callable[[], Any]) -> Any:
    """``open_()`` for a long-lived process (worker, serve): a PostgreSQL that refuses
    connections now (down, restarting, not yet up) is waited for, with capped exponential
    backoff and one line saying so; a bad URL or a refused login still ends the command."""
    from .errors import StoreUnavailable

    backoff = None
    try:
        while True:
            try:
                got = open_()
            except StoreUnavailable as exc:
                if backoff is None:
                    from .backoff import Backoff

                    backoff = Backoff(base=0.5, cap=30.0)
                    _emit(f"{exc}; retrying until it is reachable (Ctrl-C to stop)", err=True)
                time.sleep(backoff.next())
                continue
            if backoff is not None:
                _emit("connected to the state database", err=True)
            return got
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _emit(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print through the process's redactor: no secret reaches the terminal in any form."""
    from .connections import PROCESS_REDACTOR

    click.echo(PROCESS_REDACTOR(text), err=err, nl=nl)


def _complete_run_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the ids of recent runs in the state database."""
    import sqlite3

    from click.shell_completion import CompletionItem

    root = ctx.find_root()
    state = (root.params.get("state") if root.params else None) or os.environ.get("FLOWRUN_STATE",
                                                                                   ".flowrun/state.db")
    if not Path(state).is_file():
        return []
    try:
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = db.execute("SELECT id, flow, status FROM runs WHERE id LIKE ? ORDER BY created DESC LIMIT 50",
                              (incomplete.replace("%", "").replace("_", "") + "%",)).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [CompletionItem(r[0], help=f"{r[1]} {r[2]}") for r in rows]


def _complete_node_types(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: action types, triggers, auth kinds and connection kinds."""
    from click.shell_completion import CompletionItem

    from . import docs
    from .registry import default_registry

    names = docs.names(docs.catalog(default_registry()))
    return [CompletionItem(n) for n in names if n.lower().startswith(incomplete.lower())]


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Shell completion: eval \"$(_FLOWRUN_COMPLETE=bash_source flowrun)\" (bash; zsh_source for "
                    "zsh, fish_source for fish). Run ids and node types complete too.")
@click.version_option(version=None, package_name="flowrun", prog_name="flowrun", message="%(prog)s %(version)s")
@click.option("--state", default=lambda: os.environ.get("FLOWRUN_STATE", ".flowrun/state.db"), help=STATE_HELP,
              show_default=False)
@click.option("--connections", type=click.Path(dir_okay=False), default=None,
              help="connections file (default: connections.yaml beside the flow, or in a parent folder)")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=64, show_default=True,
              help="actions in flight at once across the process (Foreach also has its own bound)")
@click.option("--arm-parameters", type=click.Path(dir_okay=False), default=None,
              help="ARM parameters file for a Consumption ARM template flow ($FLOWRUN_ARM_PARAMETERS)")
@click.option("--debug", is_flag=True, help="show Python tracebacks")
@click.pass_context
def main(ctx: click.Context, state: str, connections: str | None, concurrency: int, arm_parameters: str | None,
         debug: bool) -> None:
    """flowrun: run Logic-Apps-style YAML flows (and Logic Apps definitions), durably."""
    if arm_parameters:  # read by the loader (engine.definitions) wherever a template is loaded
        os.environ["FLOWRUN_ARM_PARAMETERS"] = str(Path(arm_parameters).resolve())
    ctx.ensure_object(dict)
    ctx.obj.update(state=state, connections=connections, concurrency=concurrency, debug=debug, engine=None)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)


# -- validate / schema / nodes / graph ---------------------------------------------------------
def _flow_files(paths: tuple[str, ...]) -> list[Path]:
    from .listener.triggers import flow_files  # one rule for what a folder's flows are (serve's)

    return [f for p in paths for f in flow_files(p)]


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--strict", is_flag=True, help="warnings (a secret's environment variable not set here) are errors")
@click.option("--json", "as_json", is_flag=True, help="every file with its problems and warnings, as JSON")
@click.pass_context
@guard
def validate(ctx: click.Context, paths: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check flow files (or folders of them) as `flowrun serve` does; list every problem, one per line.

    A folder holding a `.flowrunignore` file (a dbt project, fixtures) is not scanned."""
    from .errors import FlowError
    from .registry import default_registry
    from .validation import check_file
    from . import connections as conns

    registry = default_registry()
    files = _flow_files(paths)
    if not files:
        raise Fail("no flow files found")
    bad = warned = 0
    cache: dict[str, Any] = {}
    results: list[dict] = []
    for f in files:
        errors, warnings = [], []
        try:
            cfile = ctx.obj["connections"] or conns.find_file(f)
            if str(cfile) not in cache:
                cache[str(cfile)] = conns.Connections.load(cfile, registry) if cfile else None
            report = check_file(f, registry, cache[str(cfile)])
            errors, warnings = list(report.errors), list(report.warnings)
        except FlowError as exc:  # the connections file itself
            errors = list(exc.problems)
        if not as_json:
            for problem in errors:
                click.echo(str(problem))
            for warning in warnings:
                click.echo(f"{warning} (warning)")
        failed = bool(errors) or (strict and bool(warnings))
        bad += failed
        warned += bool(warnings)
        results.append({"file": str(f), "valid": not failed,
                        "problems": [_problem_json(p, "error") for p in errors]
                        + [_problem_json(p, "error" if strict else "warning") for p in warnings]})
    if as_json:
        _emit(json.dumps({"valid": len(files) - bad, "total": len(files), "files": results}, indent=2))
    else:
        note = f", {warned} with warnings" + (" (errors under --strict)" if strict else "") if warned else ""
        click.echo(f"{len(files) - bad} of {len(files)} flow file(s) valid{note}", err=True)
    if bad:
        sys.exit(1)


def _problem_json(problem: Any, severity: str) -> dict:
    return {"file": problem.file, "line": problem.line, "column": problem.column, "path": problem.path,
            "message": problem.message, "severity": severity}


@main.command()
@click.option("--connections", "connections_", is_flag=True,
              help="the JSON Schema of connections.yaml instead (schemas/connections.schema.json)")
@click.option("--check", is_flag=True, help="exit 1 if the committed schema is out of date")
@guard
def schema(connections_: bool, check: bool) -> None:
    """Print the flow JSON Schema (generated from the registered nodes)."""
    from .registry import default_registry
    from .schema import COMMITTED, CONNECTIONS_COMMITTED, connections_schema, dumps, flow_schema

    generate, committed = (connections_schema, CONNECTIONS_COMMITTED) if connections_ else (flow_schema, COMMITTED)
    text = dumps(generate(default_registry()))
    if check:
        _check_committed(committed, text, "flowrun schema" + (" --connections" if connections_ else ""))
        return
    click.echo(text, nl=False)


def _check_committed(path: Path, text: str, command: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        raise Fail(f"{path} is out of date: run `{command} > {path}`")
    click.echo(f"{path} is up to date")


@main.command()
@click.argument("name", required=False, shell_complete=_complete_node_types)
@click.option("--markdown", is_flag=True, help="print the whole reference as Markdown (docs/nodes.md)")
@click.option("--check", is_flag=True, help="exit 1 if docs/nodes.md is out of date")
@click.option("--json", "as_json", is_flag=True, help="print the entries (or the one named) as JSON")
@guard
def nodes(name: str | None, markdown: bool, check: bool, as_json: bool) -> None:
    """List action types, triggers, auth kinds and connection kinds, or show one in full."""
    from . import docs
    from .registry import default_registry

    reg = default_registry()
    cat = docs.catalog(reg)
    if as_json:
        import dataclasses

        entries = [dataclasses.asdict(e) for e in cat.entries()
                   if name is None or e.name.lower() == name.lower()]
        if name is not None and not entries:
            from .planner import suggest
            raise Fail(f"unknown action type, trigger, auth kind or connection kind '{name}'"
                       f"{suggest(name, docs.names(cat))}")
        _emit(json.dumps(entries if name is None else entries[0], indent=2, default=str))
        return
    if markdown or check:
        text = docs.markdown(cat)
        if check:
            _check_committed(docs.COMMITTED, text, "flowrun nodes --markdown")
        else:
            click.echo(text, nl=False)
        return
    if not name:
        click.echo(docs.listing(cat), nl=False)
        for mod, why in reg.broken.items():
            click.echo(f"(plugin module {mod} could not be loaded: {why})", err=True)
        return
    text = docs.describe(cat, name)
    if text is None:
        from .planner import suggest
        raise Fail(f"unknown action type, trigger, auth kind or connection kind '{name}'"
                   f"{suggest(name, docs.names(cat))}")
    click.echo(text, nl=False)


@main.command()
@guard
def functions() -> None:
    """List the functions and filters templates can use, with their signatures."""
    from .expressions import functions_reference
    from .registry import default_registry

    kinds = {"workflow": "Workflow functions", "string": "String functions", "collection": "Collection functions",
             "logical": "Logical comparison functions", "conversion": "Conversion functions",
             "math": "Math functions", "date": "Date and time functions", "uri": "URI parsing functions",
             "manipulation": "Manipulation functions (JSON and XML)", "helper": "Jinja only",
             "filter": "Jinja filters (value | name)"}
    click.echo("In `@` expressions and in {{ }} templates alike (names match any case in `@`):\n")
    entries = functions_reference(default_registry().filters)
    for kind, title in kinds.items():
        click.echo(f"{title}:")
        for f in (e for e in entries if e.kind == kind):
            gap = "\n" + " " * 47 if len(f.signature) > 44 else " "
            click.echo(f"  {f.signature:<44}{gap}{f.description}")
        click.echo("")


@main.command()
@click.argument("flow", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@click.pass_context
@guard
def graph(ctx: click.Context, flow: str, fmt: str) -> None:
    """Draw a flow's actions and runAfter edges (Mermaid or Graphviz DOT)."""
    from .graph import render

    _emit(render(_engine(ctx).load(flow), fmt), nl=False)


@main.command()
@click.argument("definition", type=click.Path(exists=True, dir_okay=False))
@click.option("--to-jinja", is_flag=True, help="rewrite the @ expressions that have an exact {{ }} equivalent")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="write here (default: stdout)")
@click.pass_context
@guard
def convert(ctx: click.Context, definition: str, to_jinja: bool, output: str | None) -> None:
    """Write a Logic Apps definition (workflow.json, definition, ARM template) as flowrun YAML.

    Names are kept and `@` expressions kept as they are; `# flowrun:` comments mark what has no
    equivalent."""
    from .convert import convert as to_yaml

    try:
        source = Path(definition).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Fail(f"{definition}: cannot read file: {exc}") from None
    text = to_yaml(source, definition, to_jinja=to_jinja)
    if output is None:
        _emit(text, nl=False)
        return
    tmp = Path(output).with_name(Path(output).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)  # never a half-written file
    _emit(f"wrote {output}", err=True)


# -- runs ----------------------------------------------------------------------------------------
def _parse_input(value: str | None) -> Any:
    """``--input``: JSON text, ``@FILE``, or ``@-`` (standard input)."""
    if value is None:
        return None
    if value == "@-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        text = Path(value[1:]).read_text(encoding="utf-8")
    else:
        text = value
    from .safejson import loads as loads_bounded

    try:
        return loads_bounded(text)
    except (ValueError, RecursionError) as exc:
        raise Fail(f"--input is not valid JSON: {exc}") from None


def _parse_params(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise Fail(f"--param takes NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _progress(as_json: bool = False) -> Any:
    """A line per finished action: coloured on stderr when that is a terminal; else, when stdout
    is not a terminal (a log file, a CI job, a pipe) and carries no --json, a plain line on stdout."""
    from .connections import PROCESS_REDACTOR

    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=True)

        def on_event(path: str, status: str, message: str) -> None:
            if status == RUNNING:
                return
            style = STATUS_STYLE.get(status, "")
            console.print(f"  [{style}]{status:<9}[/] {escape(PROCESS_REDACTOR(path))}"
                          + (f"  [red]{escape(PROCESS_REDACTOR(message))}[/]" if message else ""), highlight=False)
        return on_event

    if as_json or sys.stdout.isatty():
        return None

    def plain(path: str, status: str, message: str) -> None:
        if status == RUNNING:
            return
        _emit(f"{status:<9} {path}" + (f"  {' '.join(str(message).split())}" if message else ""))
    return plain


def _finish(ctx: click.Context, result: Any, as_json: bool) -> None:
    """Print a finished run from the store, streamed (a big loop is never held whole)."""
    _print_run(_engine(ctx), result.id, as_json=as_json)
    if not result.succeeded:
        sys.exit(1)


def _print_run(engine: Any, run_id: str, *, as_json: bool, depth: int | None = None, failed: bool = False,
               iterations: bool = False) -> None:
    from . import inspection

    engine.flush()
    run = engine.result(run_id)
    if as_json:
        for chunk in inspection.json_chunks(engine.store, run, depth=depth, failed=failed):
            _emit(chunk, nl=False)
        _emit("")
        return
    color = sys.stdout.isatty()
    for line in inspection.text_lines(engine.store, run, depth=depth, failed=failed, iterations=iterations,
                                      color=color):
        _emit(line)


@main.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option("--input", "input_", metavar="JSON|@FILE|@-", help="the trigger body (@- reads standard input)")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="set a flow parameter")
@click.option("--json", "as_json", is_flag=True, help="print the run as JSON")
@click.option("--queue", is_flag=True, help="commit the run as Queued for `flowrun worker`s; print its id")
@click.pass_context
@guard
def run(ctx: click.Context, flow: str, input_: str | None, params: tuple[str, ...], as_json: bool,
        queue: bool) -> None:
    """Run a flow now and wait for it (exit 1 if the run does not succeed); with --queue, leave it to the workers."""
    import anyio

    if not Path(flow).is_file():
        raise Fail(f"no flow file {flow}")
    engine = _engine(ctx)
    loaded = engine.load(flow)
    body, values = _parse_input(input_), _parse_params(params)
    if input_ is not None:
        from .validation import check_body

        problems = check_body(loaded, engine.registry, body)
        if problems:
            raise Fail("--input does not match the trigger's schema (serve would answer 400):\n  "
                       + "\n  ".join(problems))
    if queue:
        run_id = engine.start(loaded, input=body, params=values)
        _emit(json.dumps({"id": run_id, "status": "Queued"}) if as_json else run_id)
        return
    result = anyio.run(lambda: engine.run(loaded, input=body, params=values, on_event=_progress(as_json)))
    _finish(ctx, result, as_json)


@main.command()
@click.argument("run_id", shell_complete=_complete_run_ids)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def resume(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Continue a run whose process died; finished actions are not run again."""
    import anyio

    engine = _engine(ctx)
    result = anyio.run(lambda: engine.resume(run_id, on_event=_progress(as_json)))
    _finish(ctx, result, as_json)


@main.command()
@click.argument("run_id", shell_complete=_complete_run_ids)
@click.option("--from", "from_action", required=True, metavar="ACTION|LOOP[N]",
              help="the action to run again (and what is downstream), or one iteration of a loop: 'each[6]'")
@click.option("--definition", type=click.Choice(["recorded", "current"]), default="recorded", show_default=True,
              help="the flow definition the old run used, or the file as it is now")
@click.option("--plan", is_flag=True, help="print what would re-run and what is reused; run nothing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def rerun(ctx: click.Context, run_id: str, from_action: str, definition: str, plan: bool, as_json: bool) -> None:
    """Re-run an action and everything downstream of it, as a new run linked to the old one.

    Steps taken over from the old run are marked "(reused)" by show."""
    import anyio

    engine = _engine(ctx)
    if plan:
        flow, old, reuse, again = engine.rerun_plan(run_id, from_action, definition)
        reused = reuse.actions()
        if as_json:
            _emit(json.dumps({"run": old.id, "rerun": again, "reuse": reused}, indent=2))
        else:
            _emit(f"rerun of {old.id} ({flow.name}) from '{from_action}'")
            _emit("runs again: " + (", ".join(again) or "-"))
            _emit("reused:     " + (", ".join(reused) or "-"))
        return
    result = anyio.run(lambda: engine.rerun(run_id, from_action, definition=definition, on_event=_progress(as_json)))
    _finish(ctx, result, as_json)


@main.command()
@click.option("--flow", help="only runs of this flow")
@click.option("--status", help="only runs with this status")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def runs(ctx: click.Context, flow: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List recent runs (newest first): a rerun, a replay and a child run say whose."""
    from . import inspection

    engine = _engine(ctx)
    try:
        rows = engine.list_runs(flow=flow, status=status, limit=limit)
    except ValueError as exc:
        raise Fail(f"--status: {exc}") from None
    kinds = {r.id: inspection.kind(engine.result(r.id)) if r.rerun_of else ("child" if r.parent_id else "run")
             for r in rows}
    if as_json:
        out = []
        for r in rows:
            item = r.to_json(steps=False)
            item["kind"] = kinds[r.id]
            if item["kind"] == "replay":
                item["replay_of"], item["rerun_of"] = r.rerun_of, None
            out.append(item)
        _emit(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    waits = any(r.waiting for r in rows)
    table = Table("run", "flow", "status", "started", "duration", "from", *(["waiting"] if waits else []), box=None)
    for r in rows:
        dur = f"{(r.ended - r.started) * 1000:.0f} ms" if r.ended and r.started else ""
        link = {"rerun": f"rerun of {(r.rerun_of or '')[:12]}", "replay": f"replay of {(r.rerun_of or '')[:12]}",
                "child": f"child of {(r.parent_id or '')[:12]}"}.get(kinds[r.id], "")
        table.add_row(r.id[:12], r.flow, f"[{STATUS_STYLE.get(r.status, '')}]{r.status_text}[/]",
                      _when(r.started or r.created), dur, link, *([_printable(r.waiting or "")] if waits else []))
    Console().print(table)


@main.command()
@click.argument("run_id", shell_complete=_complete_run_ids)
@click.option("--json", "as_json", is_flag=True, help="the run and its steps as JSON (steps streamed)")
@click.option("--failed", is_flag=True, help="only what did not succeed (and the iterations holding it)")
@click.option("--depth", type=click.IntRange(1, None), default=None,
              help="levels to show: 1 = the top-level actions, 2 = a loop's iterations, 3 = inside them")
@click.option("--iterations", is_flag=True, help="list every loop iteration instead of a summary")
@click.pass_context
@guard
def show(ctx: click.Context, run_id: str, as_json: bool, failed: bool, depth: int | None, iterations: bool) -> None:
    """Show a run: its trigger payload, parameters, git commit and times, then each action with
    status, duration and error. A loop is summarised: iterations counted by status, failed ones
    listed."""
    _print_run(_engine(ctx), run_id, as_json=as_json, depth=depth, failed=failed, iterations=iterations)


@main.command()
@click.argument("run_id", shell_complete=_complete_run_ids)
@click.option("--wait", default=10.0, show_default=True, type=click.FloatRange(0, 3600), metavar="SECONDS",
              help="how long to wait for a run another process executes to stop")
@click.pass_context
@guard
def cancel(ctx: click.Context, run_id: str, wait: float) -> None:
    """Cancel a run that has not finished: what is in flight is cancelled, nothing new starts."""
    import time

    engine = _engine(ctx)
    run = engine.result(run_id)
    outcome = engine.cancel(run.id)
    if outcome == "requested":
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if engine.result(run.id).status.is_terminal:
                break
            time.sleep(0.05)  # polling another process's progress (bounded by --wait)
        status = engine.result(run.id).status
        if not status.is_terminal:
            _emit(f"run {run.id}: cancel requested; the process executing it stops it shortly")
            return
        _emit(f"run {run.id}: {status}")
        return
    _emit(f"run {run.id}: Cancelled")


@main.command()
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="finished runs older than this go: 30d, 12h, 90m, 2w or P30D")
@click.option("--dry-run", is_flag=True, help="count what would go; delete nothing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def prune(ctx: click.Context, older_than: str, dry_run: bool, as_json: bool) -> None:
    """Delete finished runs older than AGE, with their steps, blobs and schedule firings."""
    from .retention import parse_age, prune as prune_

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise Fail(f"--older-than: {exc}") from None
    done = prune_(_engine(ctx).store, age, dry_run=dry_run)
    if as_json:
        _emit(json.dumps({"dry_run": dry_run, **done.to_json()}, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    _emit(f"{verb} {done.runs} run(s), {done.steps} step(s), {done.firings} schedule firing(s), "
          f"{done.blobs} blob(s)")


def _printable(text: str) -> str:
    """Text from the state database (a key's value) as a terminal may show it: no markup, no control characters."""
    from rich.markup import escape

    return escape("".join(c if c.isprintable() else "?" for c in text))


def _when(ts: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


@main.command()
@click.option("--capacity", type=click.IntRange(1, 10_000), default=32, show_default=True,
              help="runs this worker executes at once")
@click.option("--poll", type=click.FloatRange(0.05, 3600), default=5.0, show_default=True,
              help="seconds between looks for work when no NOTIFY came (a dead worker's runs, due waits)")
@click.option("--lease-ttl", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="seconds a run's lease lasts without renewal (renewed every third of it)")
@click.option("--park-after", type=click.FloatRange(0, 86400), default=5.0, show_default=True,
              help="a run whose actions all wait at least this long is parked: it frees its slot, and any "
                   "worker takes it again when it is due")
@click.pass_context
@guard
def worker(ctx: click.Context, capacity: int, poll: float, lease_ttl: float, park_after: float) -> None:
    """Execute queued and due runs of a PostgreSQL state database; start as many as needed.

    Runs are claimed with SELECT ... FOR UPDATE SKIP LOCKED under a lease renewed by
    heartbeat; a worker that dies (kill -9) has its runs resumed by another, from their
    recorded steps. Stop with Ctrl-C or SIGTERM: runs in flight stop with what finished
    committed, and another worker continues them."""
    import signal

    import anyio

    from .worker import Worker

    engine = wait_for_store(lambda: _engine(ctx))
    engine.lease_ttl, engine.park_after = lease_ttl, park_after
    w = Worker(engine, capacity=capacity, poll=poll)

    async def main_() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                    async for _ in received:
                        stop.set()
                        tg.cancel_scope.cancel()
                        return
            tg.start_soon(signals)
            await w.run(stop=stop)
            tg.cancel_scope.cancel()

    try:
        anyio.run(main_)
    finally:
        engine.close()


from .dbcommands import db  # noqa: E402
from .listener.commands import replay, serve  # noqa: E402  (kept light: imports happen inside)

main.add_command(serve)
from .testing.commands import plan, test  # noqa: E402  (kept light: imports happen inside)

main.add_command(test)
main.add_command(plan)
main.add_command(replay)
main.add_command(db)

if __name__ == "__main__":
    main()
