import pytest

from tests.support import postgres


@pytest.fixture(params=postgres.BACKENDS)
def state(request, tmp_path):
    """Where a state database lives, for each backend: a SQLite file, or a PostgreSQL URL on a
    schema of this test's own."""
    yield from postgres.backend_state(request.param, tmp_path)


@pytest.fixture
def store(state):
    from engine.storage import open_store

    s = open_store(state)
    yield s
    s.close()
