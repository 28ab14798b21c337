"""``flowrun db status`` and ``flowrun db upgrade``: the state database's schema version."""
from __future__ import annotations

import json

import click

from .clierrors import Fail, guard


@click.group()
def db() -> None:
    """The state database's schema: where it is, and bringing it up to date.

    --state takes a SQLite file or a postgresql:// URL. Every flowrun process upgrades an
    older schema when it opens it (under a lock: once); `db upgrade` does it ahead of a
    deployment, and a database newer than this flowrun is refused."""


def _say(ctx: click.Context, info: dict, as_json: bool) -> None:
    from .connections import PROCESS_REDACTOR

    if as_json:
        click.echo(PROCESS_REDACTOR(json.dumps(info, indent=2)))
        return
    state = ("newer than this flowrun: upgrade flowrun" if info["newer"] else
             f"{info['pending']} migration(s) pending: flowrun db upgrade" if info["pending"] else "up to date")
    click.echo(PROCESS_REDACTOR(f"{info['backend']} {info['database']}: schema version {info['version']}, "
                                f"this flowrun {info['code']} ({state})"))


@db.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def status(ctx: click.Context, as_json: bool) -> None:
    """The schema version of the state database and of this flowrun."""
    from .storage import status as status_

    info = status_(ctx.find_root().obj["state"])
    _say(ctx, info, as_json)
    if info["newer"]:
        ctx.exit(1)


@db.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guard
def upgrade(ctx: click.Context, as_json: bool) -> None:
    """Apply the pending migrations (one transaction; concurrent upgrades wait for each other)."""
    from .storage import status as status_, upgrade as upgrade_

    before = status_(ctx.find_root().obj["state"])
    if before["newer"]:
        raise Fail(f"{before['database']}: schema version {before['version']} is newer than this flowrun "
                   f"understands ({before['code']}); upgrade flowrun")
    _say(ctx, upgrade_(ctx.find_root().obj["state"]), as_json)
