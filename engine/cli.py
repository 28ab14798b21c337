"""The ``flowrun`` command: a thin layer over engine.api. Heavy imports happen inside commands."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .clierrors import Fail, guard
from .state import RUNNING, Status

STATE_HELP = "state database (default .flowrun/state.db, or $FLOWRUN_STATE)"
STATUS_STYLE = {Status.SUCCEEDED: "green", Status.FAILED: "red", Status.TIMEDOUT: "red",
                Status.CANCELLED: "yellow", Status.SKIPPED: "dim", Status.RUNNING: "cyan", Status.QUEUED: "cyan"}


def _engine(ctx: click.Context) -> Any:
    from .api import Engine

    obj = ctx.find_root().obj
    if obj.get("engine") is None:
        obj["engine"] = Engine(obj["state"], connections=obj["connections"], concurrency=obj["concurrency"])
    return obj["engine"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state", default=lambda: os.environ.get("FLOWRUN_STATE", ".flowrun/state.db"), help=STATE_HELP,
              show_default=False)
@click.option("--connections", type=click.Path(dir_okay=False), default=None,
              help="connections file (default: connections.yaml beside the flow, or in a parent folder)")
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=64, show_default=True,
              help="actions in flight at once across the process (Foreach also has its own bound)")
@click.option("--debug", is_flag=True, help="show Python tracebacks")
@click.pass_context
def main(ctx: click.Context, state: str, connections: str | None, concurrency: int, debug: bool) -> None:
    """flowrun: run Logic-Apps-style YAML flows, durably."""
    ctx.ensure_object(dict)
    ctx.obj.update(state=state, connections=connections, concurrency=concurrency, debug=debug, engine=None)
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)


# -- validate / schema / nodes / graph ---------------------------------------------------------
def _flow_files(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*.y*ml") if f.suffix in (".yaml", ".yml")
                          and f.name not in ("connections.yaml", "connections.yml"))
        else:
            out.append(p)
    return out


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--strict", is_flag=True, help="warnings (a secret's environment variable not set here) are errors")
@click.pass_context
@guard
def validate(ctx: click.Context, paths: tuple[str, ...], strict: bool) -> None:
    """Check flow files (or folders of them) as `flowrun serve` does; list every problem, one per line."""
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
    for f in files:
        try:
            cfile = ctx.obj["connections"] or conns.find_file(f)
            if str(cfile) not in cache:
                cache[str(cfile)] = conns.Connections.load(cfile, registry) if cfile else None
            report = check_file(f, registry, cache[str(cfile)])
        except FlowError as exc:  # the connections file itself
            bad += 1
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        for problem in report.errors:
            click.echo(str(problem))
        for warning in report.warnings:
            click.echo(f"{warning} (warning)")
        bad += bool(report.errors) or (strict and bool(report.warnings))
        warned += bool(report.warnings)
    note = f", {warned} with warnings" + (" (errors under --strict)" if strict else "") if warned else ""
    click.echo(f"{len(files) - bad} of {len(files)} flow file(s) valid{note}", err=True)
    if bad:
        sys.exit(1)


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
@click.argument("name", required=False)
@click.option("--markdown", is_flag=True, help="print the whole reference as Markdown (docs/nodes.md)")
@click.option("--check", is_flag=True, help="exit 1 if docs/nodes.md is out of date")
@guard
def nodes(name: str | None, markdown: bool, check: bool) -> None:
    """List action types, triggers, auth kinds and connection kinds, or show one in full."""
    from . import docs
    from .registry import default_registry

    reg = default_registry()
    cat = docs.catalog(reg)
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

    kinds = {"workflow": "Workflow functions", "helper": "Helpers", "filter": "Filters (value | name)"}
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

    click.echo(render(_engine(ctx).load(flow), fmt))


# -- runs ----------------------------------------------------------------------------------------
def _parse_input(value: str | None) -> Any:
    if value is None:
        return None
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Fail(f"--input is not valid JSON: {exc}") from None


def _parse_params(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise Fail(f"--param takes NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)

    def on_event(path: str, status: str, message: str) -> None:
        if status == RUNNING:
            return
        style = STATUS_STYLE.get(status, "")
        console.print(f"  [{style}]{status:<9}[/] {path}" + (f"  [red]{message}[/]" if message else ""),
                      highlight=False)
    return on_event


def _finish(ctx: click.Context, result: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_result_json(result), indent=2, default=str))
    else:
        _print_tree(result)
    if not result.succeeded:
        sys.exit(1)


@main.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option("--input", "input_", metavar="JSON|@FILE", help="the trigger body")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="set a flow parameter")
@click.option("--json", "as_json", is_flag=True, help="print the run as JSON")
@click.pass_context
@guard
def run(ctx: click.Context, flow: str, input_: str | None, params: tuple[str, ...], as_json: bool) -> None:
    """Run a flow now and wait for it (exit 1 if the run does not succeed)."""
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
    result = anyio.run(lambda: engine.run(loaded, input=body, params=values, on_event=_progress()))
    _finish(ctx, result, as_json)


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def resume(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Continue a run whose process died; finished actions are not run again."""
    import anyio

    engine = _engine(ctx)
    result = anyio.run(lambda: engine.resume(run_id, on_event=_progress()))
    _finish(ctx, result, as_json)


@main.command()
@click.argument("run_id")
@click.option("--from", "from_action", required=True, help="the action to run again (and what is downstream)")
@click.option("--definition", type=click.Choice(["recorded", "current"]), default="recorded", show_default=True,
              help="the flow definition the old run used, or the file as it is now")
@click.option("--plan", is_flag=True, help="print what would re-run and what is reused; run nothing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def rerun(ctx: click.Context, run_id: str, from_action: str, definition: str, plan: bool, as_json: bool) -> None:
    """Re-run an action and everything downstream of it, as a new run linked to the old one."""
    import anyio

    engine = _engine(ctx)
    if plan:
        flow, old, reuse, again = engine.rerun_plan(run_id, from_action, definition)
        reused = reuse.actions()
        if as_json:
            click.echo(json.dumps({"run": old.id, "rerun": again, "reuse": reused}, indent=2))
        else:
            click.echo(f"rerun of {old.id} ({flow.name}) from '{from_action}'")
            click.echo("runs again: " + (", ".join(again) or "-"))
            click.echo("reused:     " + (", ".join(reused) or "-"))
        return
    result = anyio.run(lambda: engine.rerun(run_id, from_action, definition=definition, on_event=_progress()))
    _finish(ctx, result, as_json)


@main.command()
@click.option("--flow", help="only runs of this flow")
@click.option("--status", help="only runs with this status")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def runs(ctx: click.Context, flow: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List recent runs."""
    try:
        rows = _engine(ctx).list_runs(flow=flow, status=status, limit=limit)
    except ValueError as exc:
        raise Fail(f"--status: {exc}") from None
    if as_json:
        click.echo(json.dumps([r.to_json(steps=False) for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run", "flow", "status", "started", "duration", "from", box=None)
    for r in rows:
        dur = f"{(r.ended - r.started) * 1000:.0f} ms" if r.ended and r.started else ""
        link = f"rerun of {r.rerun_of[:12]}" if r.rerun_of else (f"child of {r.parent_id[:12]}" if r.parent_id else "")
        table.add_row(r.id[:12], r.flow, f"[{STATUS_STYLE.get(r.status, '')}]{r.status_text}[/]",
                      _when(r.started or r.created), dur, link)
    Console().print(table)


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run as a tree of actions with status, duration and error."""
    result = _engine(ctx).result(run_id)
    if as_json:
        click.echo(json.dumps(_result_json(result), indent=2, default=str))
    else:
        _print_tree(result)


def _when(ts: float | None) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _result_json(result: Any) -> dict:
    return result.to_json()


def _print_tree(result: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    style = STATUS_STYLE.get(result.status, "")
    root = Tree(f"[bold]{escape(result.flow)}[/] run {result.run_id}  [{style}]{result.status}[/]")
    nodes: dict[str, Any] = {"": root}
    for path in sorted(result.steps, key=lambda p: (result.steps[p].started or result.steps[p].ended or 0)):
        pass
    ordered = sorted(result.steps.values(), key=lambda s: (s.path.count("/") + s.path.count("["), s.started or s.ended or 0))
    for step in ordered:
        parent = _parent_path(step.path)
        holder = nodes.get(parent) or root
        dur = f" {step.duration * 1000:.1f} ms" if step.duration is not None else ""
        tries = f" ({step.attempts} attempts)" if step.attempts and step.attempts > 1 else ""
        tries += "  [yellow]retried after a crash[/]" if step.interrupted else ""
        label = f"{escape(step.path.rsplit('/', 1)[-1])}  [{STATUS_STYLE.get(step.status, '')}]{step.status}[/]{dur}{tries}"
        if step.error:
            label += f"\n[red]{escape(str(step.error.get('message', step.error)))}[/]"
        nodes[step.path] = holder.add(label)
    if result.error:
        root.add(f"[red]error: {escape(str(result.error.get('message', result.error)))}[/]")
    if result.outputs:
        root.add("outputs: " + escape(json.dumps(result.outputs, default=str)[:500]))
    Console().print(root)


def _parent_path(path: str) -> str:
    """'loop[2]/each' -> 'loop[2]', 'loop[2]' -> 'loop', 'try/charge' -> 'try'."""
    if path.endswith("]"):
        return path[: path.rindex("[")]
    return path.rsplit("/", 1)[0] if "/" in path else ""


from .listener.commands import replay, serve  # noqa: E402  (kept light: imports happen inside)

main.add_command(serve)
main.add_command(replay)

if __name__ == "__main__":
    main()
