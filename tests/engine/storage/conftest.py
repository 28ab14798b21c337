import pytest

from tests.support import postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path):
    """Where a state database lives, for each backend: a SQLite file, or a PostgreSQL URL on a
    schema of this test's own."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    if postgres.skip_reason:
        pytest.skip(postgres.skip_reason)
    url, schema = postgres.postgres_url()
    yield url
    postgres.drop(schema)


@pytest.fixture
def store(state):
    from engine.storage import open_store

    s = open_store(state)
    yield s
    s.close()
