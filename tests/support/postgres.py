"""A PostgreSQL database of its own for each test: a fresh schema on the loopback server.

``postgres_url()`` gives a URL whose ``search_path`` is a new, empty schema (dropped by
``drop``), so tests running in parallel (xdist) never see each other's tables. Without a
reachable server, ``skip_reason`` says why and the tests that need one skip with it.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

SERVER = os.environ.get("FLOWRUN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _probe() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'flowrun[postgres]')"
    try:
        psycopg.connect(SERVER, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {SERVER} (set FLOWRUN_TEST_POSTGRES): {str(exc).strip().splitlines()[0]}"
    return None


skip_reason = _probe()


def postgres_url() -> tuple[str, str]:
    """(url, schema): a URL on a new empty schema."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in SERVER else "?"
    return f"{SERVER}{sep}options={quote(f'-csearch_path={schema}')}", schema


def drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["sqlite", "postgresql"]


def backend_state(backend: str, tmp_path: Path) -> Iterator[str]:
    """(A fixture's body) where a state database lives on ``backend``: a SQLite file in
    ``tmp_path``, or a URL on a schema of its own, dropped after; skips without a server."""
    import pytest

    if backend == "sqlite":
        yield str(tmp_path / "state.db")
        return
    if skip_reason:
        pytest.skip(skip_reason)
    url, schema = postgres_url()
    try:
        yield url
    finally:
        drop(schema)
