import pytest

from tests.support.recorder import Recorder


@pytest.fixture
def recorder():
    """A local HTTP server that answers like a vendor API and records requests."""
    with Recorder() as r:
        yield r


import textwrap
from pathlib import Path

import engine


@pytest.fixture
def flow_file(tmp_path):
    """Write a flow (YAML text, dedented) into tmp_path and return its path."""
    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


@pytest.fixture
def run_flow(tmp_path, flow_file):
    """Run a flow given as YAML text with a real engine and a SQLite file in tmp_path."""
    def run(text: str, *, input=None, params=None, connections: str | None = None, **engine_kw):
        path = flow_file(text)
        conn_path = None
        if connections is not None:
            conn_path = tmp_path / "connections.yaml"
            conn_path.write_text(textwrap.dedent(connections))
        return engine.run_file(path, input=input, params=params, state=tmp_path / "state.db",
                               connections=conn_path, **engine_kw)
    return run


@pytest.fixture
def pg_state():
    """A PostgreSQL state URL on a schema of this test's own (dropped after); skips, saying
    why, where no server answers (tests/support/postgres.py)."""
    from tests.support import postgres

    if postgres.skip_reason:
        pytest.skip(postgres.skip_reason)
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)
