"""The AWS tests share one moto server (tests/support/moto.py) for the whole session."""
from __future__ import annotations

import pytest

from tests.support.moto import Moto


@pytest.fixture(scope="session")
def moto():
    server = Moto()
    yield server
    server.stop()


# A secret with quotes, a backslash, '/', '+', '%' and non-ASCII: it must never show anywhere.
SECRET = 'fAk3"se\'cr\\et/+%é'


@pytest.fixture
def aws_run(tmp_path, monkeypatch, moto):
    """aws_run(actions, input=None, endpoint=None, settings="") -> the finished Run. The flow runs
    through engine.run_file with a connections.yaml whose `aws` connection points at moto (or
    ``endpoint``), with fake keys from the environment."""
    import yaml

    import engine
    from tests.support.moto import KEY_ID, connections_yaml

    monkeypatch.setenv("TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("TEST_AWS_SECRET", SECRET)

    def run(actions: dict, input=None, endpoint: str | None = None, settings: str = "", extra: str = ""):
        (tmp_path / "connections.yaml").write_text(connections_yaml(endpoint or moto.url, settings=settings,
                                                                    extra=extra))
        flow = tmp_path / "flow.yaml"
        flow.write_text(yaml.safe_dump({"triggers": {"manual": {"type": "Manual"}}, "actions": actions},
                                       sort_keys=False))
        return engine.run_file(flow, input=input, state=tmp_path / "state.db",
                               connections=tmp_path / "connections.yaml")

    return run


def action(type_: str, inputs: dict, **extra) -> dict:
    return {"type": type_, "connection": "aws", "inputs": inputs, **extra}
