"""How the flowrun commands report errors: one clear line and an exit code, never a
traceback (unless --debug), and never a secret (every message passes the process's redactor).
Shared by engine.cli and engine.listener.commands."""
from __future__ import annotations

import functools
import sys
from typing import Any

import click


class Fail(click.ClickException):
    """Bad usage or input: exit code 2."""

    exit_code = 2


def guard(fn: Any) -> Any:
    """Turn flowrun's errors into one clear message and a non-zero exit (tracebacks with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .connections import PROCESS_REDACTOR as redact
        from .errors import FlowError, FlowrunError

        try:
            return fn(*args, **kwargs)
        except click.ClickException as exc:
            exc.message = redact(exc.message)
            raise
        except (click.exceptions.Exit, click.Abort):
            raise
        except FlowError as exc:
            if click.get_current_context().find_root().obj.get("debug"):
                raise
            for problem in exc.problems:
                click.echo(redact(str(problem)), err=True)
            sys.exit(1)
        except (FlowrunError, OSError, ValueError, UnicodeError) as exc:
            if click.get_current_context().find_root().obj.get("debug"):
                raise
            raise Fail(redact(str(exc))) from None
        except Exception as exc:  # the state database (a lock held past the busy timeout, a broken file)
            sqlite3 = sys.modules.get("sqlite3")  # not imported for it: `flowrun --help` stays light
            psycopg = sys.modules.get("psycopg")  # a PostgreSQL state database that went away mid-command
            if psycopg is not None and isinstance(exc, psycopg.Error) \
                    and not click.get_current_context().find_root().obj.get("debug"):
                from .pgconn import _scrub, shown

                state = str(click.get_current_context().find_root().obj.get("state") or "")
                raise Fail(redact(f"state database {shown(state)}: {_scrub(exc, state)}")) from None
            if sqlite3 is None or not isinstance(exc, sqlite3.Error) \
                    or click.get_current_context().find_root().obj.get("debug"):
                raise
            state = click.get_current_context().find_root().obj.get("state")
            hint = (" (another process holds its write lock: try again, or stop that process)"
                    if "locked" in str(exc) or "busy" in str(exc) else "")
            raise Fail(redact(f"state database {state or ''}: {exc}{hint}")) from None
        except KeyboardInterrupt:
            click.echo("interrupted: what finished is recorded; `flowrun resume RUN` continues a run", err=True)
            sys.exit(130)
    return wrapper
