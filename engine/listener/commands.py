"""`flowrun serve` and `flowrun replay` (heavy imports inside the commands)."""
from __future__ import annotations

import os

import click

from engine.clierrors import Fail, guard


@click.command()
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--flows", "flows_dir", default=None, type=click.Path(exists=True),
              help="folder of flow files to serve (every *.yaml and Logic Apps workflow.json in it and below; "
                   "FOLDER says the same, e.g. a Standard app folder; default: flows)")
@click.option("--state", default=None, help="state database (default: flowrun's --state)")
@click.option("--connections", type=click.Path(dir_okay=False), default=None,
              help="connections file (default: connections.yaml in the flows folder or a parent of it)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port (see the log)")
@click.option("--base-url", default=None, metavar="URL",
              help="public URL the server is reached at behind a proxy (signatures are checked against it; "
                   "Location headers use it)")
@click.option("--max-body", default=1_048_576, show_default=True, type=int, metavar="BYTES",
              help="larger bodies get 413")
@click.option("--max-headers", default=100, show_default=True, type=int, metavar="N",
              help="requests with more headers get 431")
@click.option("--max-header-bytes", default=16_384, show_default=True, type=int, metavar="BYTES",
              help="requests whose headers add up to more get 431")
@click.option("--max-in-flight", default=256, show_default=True, type=int, metavar="N",
              help="runs executing at once (without --worker on PostgreSQL: callers waiting for a worker's "
                   "reply); past it triggers get 429 with Retry-After (nothing is queued)")
@click.option("--sync-timeout", default=30.0, show_default=True, type=float, metavar="SECONDS",
              help="how long a request waits for a Response action before 202 + Location")
@click.option("--shutdown-timeout", default=30.0, show_default=True, type=float, metavar="SECONDS",
              help="on SIGTERM/SIGINT, how long runs in flight may take to finish (the rest resume at the next start)")
@click.option("--reload", is_flag=True, help="watch the flows folder and reload changed flows (requests in flight "
                                             "keep the version they started with)")
@click.option("--admin-token-env", default="FLOWRUN_ADMIN_TOKEN", show_default=True, metavar="VAR",
              help="environment variable holding the admin token (Authorization: Bearer) for GET /runs/{id} and "
                   "the web UI at /ui; unset: serve makes one and keeps it in <state>.ui-token")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--retention", default=None, metavar="AGE",
              help="prune runs that finished more than AGE ago (30d, 12h, P30D) at start and every "
                   "--retention-interval (default: keep everything)")
@click.option("--retention-interval", default="1h", show_default=True, metavar="AGE",
              help="how often --retention prunes")
@click.option("--worker", is_flag=True,
              help="PostgreSQL state: also execute runs here (the ones this server accepts, and any queued or due "
                   "one, as `flowrun worker` does); without it, accepted runs are committed Queued for the workers")
@click.pass_context
@guard
def serve(ctx: click.Context, folder: str | None, flows_dir: str | None, state: str | None, connections: str | None, host: str, port: int,
          base_url: str | None, max_body: int, max_headers: int, max_header_bytes: int, max_in_flight: int, sync_timeout: float, shutdown_timeout: float,
          reload: bool, admin_token_env: str, log_level: str, retention: str | None, retention_interval: str,
          worker: bool) -> None:
    """Serve the flows' HTTP triggers and schedules.

    POST /flows/{flow}/triggers/{trigger} starts a run; GET /runs/{id} polls it;
    /healthz, /readyz, /metrics and /openapi.json are for operations. Logs are JSON lines
    on stderr. Flows with problems are reported and not served; the others are.
    """
    from engine.api import Engine

    from . import logs, server

    flows_dir = folder or flows_dir or "flows"
    if not os.path.isdir(flows_dir):
        raise Fail(f"no folder {flows_dir!r} to serve (give one: flowrun serve FOLDER)")
    from .app import Listener, Options

    from engine.retention import parse_age

    try:
        keep = parse_age(retention) if retention is not None else None
        every = parse_age(retention_interval)
    except ValueError as exc:
        raise Fail(f"--retention: {exc}") from None
    if every <= 0:
        raise Fail("--retention-interval: must be more than 0")
    root = ctx.find_root().obj
    state = state or root["state"]
    from engine.storage import is_url

    lock = None if is_url(state) else server.StateLock(state)  # PostgreSQL: many servers share one database
    if lock is not None:
        lock.acquire()
    # One connections file for the whole folder, found once (not per request): --connections, or
    # connections.yaml in the flows folder or a parent of it.
    from engine.connections import find_file
    from pathlib import Path

    connections = connections or root.get("connections") or find_file(Path(flows_dir) / "_.yaml")
    from engine.cli import wait_for_store

    engine = wait_for_store(lambda: Engine(state, connections=connections))
    logs.configure(engine.redactor, log_level)
    admin_token, token_file = os.environ.get(admin_token_env) or None, None
    if admin_token is None:  # the web UI needs one: made once, kept beside the state database
        from .ui.session import token_file as make_token

        admin_token, token_file = make_token(state)
    options = Options(flows=flows_dir, host=host, port=port, base_url=base_url, max_body=max_body,
                      max_headers=max_headers, max_header_bytes=max_header_bytes,
                      max_in_flight=max_in_flight, sync_timeout=sync_timeout, shutdown_timeout=shutdown_timeout,
                      reload=reload, admin_token=admin_token, ui_token_file=str(token_file) if token_file else None,
                      retention=keep, retention_interval=every, worker=worker)
    listener = Listener(engine, options)
    try:
        listener.load()
        server.run(listener, host, port)
    finally:
        engine.close()
        if lock is not None:
            lock.release()


@click.command()
@click.argument("run_id")
@click.option("--definition", type=click.Choice(["current", "recorded"]), default="current", show_default=True,
              help="the flow file as it is now, or the definition the old run used")
@click.option("--json", "as_json", is_flag=True, help="print the new run as JSON")
@click.pass_context
@guard
def replay(ctx: click.Context, run_id: str, definition: str, as_json: bool) -> None:
    """Start a new run from exactly the request RUN received (stored with it), and wait for it."""
    import anyio

    from engine.api import Engine
    from engine.cli import _finish

    from .replay import start_replay

    root = ctx.find_root().obj
    if root.get("engine") is None:
        root["engine"] = Engine(root["state"], connections=root.get("connections"))
    engine = root["engine"]
    flow, new_id = start_replay(engine, run_id, definition)
    click.echo(f"replaying {run_id} as run {new_id}", err=True)
    result = anyio.run(lambda: engine.execute(new_id, flow))
    _finish(ctx, result, as_json)
