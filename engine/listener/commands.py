"""`flowrun serve` and `flowrun replay` (heavy imports inside the commands)."""
from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Serve flows' HTTP triggers and schedules (not built yet)."""
    raise click.ClickException("flowrun serve is not available yet")


@click.command()
@click.argument("run_id")
def replay(run_id: str) -> None:
    """Start a new run from exactly the request a run received (not built yet)."""
    raise click.ClickException("flowrun replay is not available yet")
