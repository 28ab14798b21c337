"""Run the nightly orders pipeline once, offline, against loopback fakes of every vendor.

    python examples/data_pipeline/demo.py          # the happy path: exits 0 when the run Succeeded
    python examples/data_pipeline/demo.py --fail   # one order has a negative amount, a dbt test
                                                   # fails, the catch block posts it: exits 0 when
                                                   # the run Failed that way

Starts on 127.0.0.1: Snowflake (fakesnow in server mode), a Databricks workspace (Jobs API),
Monte Carlo (GraphQL), and the vendor sandbox of examples/order_confirmation for SendGrid and
the alert webhook; dbt builds examples/data_pipeline/dbt on a DuckDB file. The fakes are the
ones the test suite uses (tests/support), so install the test extra: pip install -e '.[all,test]'.
It sets demo secrets in the environment, writes a connections file pointing at the fakes, fires
the Recurrence-triggered flow once (as the schedule would, with {scheduledTime, firedTime}),
then prints the run and what each fake received.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples/order_confirmation")]

import sandbox  # noqa: E402  (examples/order_confirmation: SendGrid and the webhook)
from tests.support.databricks import FakeDatabricks, JobSpec  # noqa: E402
from tests.support.montecarlo import MonteCarloFake  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402
from tests.support.snowflake import FakeSnowflake  # noqa: E402

JOB_ID = 4242  # the Databricks enrichment job the flow runs
RULE = "customer_revenue_not_empty"  # the Monte Carlo circuit breaker rule
DEMO_SECRETS = {"SNOWFLAKE_PASSWORD": "demo-snowflake-password", "DATABRICKS_TOKEN": "dapi-demo-token",
                "MCD_API_KEY_ID": "demo-mcd-id", "MCD_API_TOKEN": "demo-mcd-token",
                "SENDGRID_API_KEY": "SG.demo-key", "ALERTS_TOKEN": "demo-alerts-token"}
BAD_ORDERS = [{"id": 1, "customer": "Ada", "amount": 120.5}, {"id": 2, "customer": "Alan", "amount": -80},
              {"id": 3, "customer": "Ada", "amount": 42.25}]


@dataclass
class Fakes:
    """The running fakes; ``stop()`` stops them all."""

    snowflake: FakeSnowflake
    databricks: FakeDatabricks
    montecarlo: MonteCarloFake
    sandbox: Recorder  # SendGrid and the alert webhook
    stopping: list = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stopping):
            stop()


def start_fakes() -> Fakes:
    import snowflake.connector

    stopping: list = []
    try:
        snow = FakeSnowflake().start()
        stopping.append(snow.stop)
        # the warehouse as it is before the night: a database, a schema, an empty table (fakesnow
        # keeps its databases for the life of the process, so a second demo run replaces it)
        setup = snowflake.connector.connect(user="setup", password="x", account="fakesnow", host="127.0.0.1",
                                            port=snow.port, protocol="http")
        for sql in ("CREATE DATABASE IF NOT EXISTS ANALYTICS", "CREATE SCHEMA IF NOT EXISTS ANALYTICS.RAW",
                    "CREATE OR REPLACE TABLE ANALYTICS.RAW.ORDERS (id INT, customer VARCHAR, amount NUMBER(10,2))"):
            setup.cursor().execute(sql)
        setup.close()
        snow.requests.clear()  # keep only what the flow sends
        workspace = FakeDatabricks(Recorder().start())
        stopping.append(workspace.api.stop)
        workspace.jobs[JOB_ID] = JobSpec(polls=0, notebook_result='{"enriched": true}')
        mc = MonteCarloFake()
        mc.__enter__()
        stopping.append(lambda: mc.__exit__(None, None, None))
        mc.rule(RULE, breaches=[0])
        api = sandbox.start()
        stopping.append(api.stop)
        api.route("POST", "/hooks/data-alerts", body="ok", headers={"Content-Type": "text/plain"})
    except BaseException:
        for stop in reversed(stopping):
            stop()
        raise
    return Fakes(snow, workspace, mc, api, stopping)


def write_connections(work: Path, fakes: Fakes) -> Path:
    """The example's connections.yaml with each endpoint on its fake and the dbt paths in ``work``."""
    conns = yaml.safe_load((HERE / "connections.yaml").read_text())["connections"]
    conns["snowflake"]["endpoint"] = fakes.snowflake.endpoint
    conns["databricks"]["endpoint"] = fakes.databricks.url
    conns["montecarlo"]["endpoint"] = fakes.montecarlo.url
    conns["sendgrid"]["endpoint"] = fakes.sandbox.url
    conns["alerts"]["settings"]["base_url"] = fakes.sandbox.url + "/hooks/"
    dbt = conns["dbt"]["settings"]
    dbt.update(project_dir=str(HERE / "dbt"), profiles_dir=str(HERE / "dbt"), artifacts_dir=str(work / "dbt"),
               env={"WAREHOUSE_DUCKDB": str(work / "warehouse.duckdb")})
    path = work / "connections.yaml"
    path.write_text(yaml.safe_dump({"connections": conns}, sort_keys=False))
    return path


def run_pipeline(work: Path, *, fail: bool = False, scheduled: str | None = None) -> tuple[Any, Fakes]:
    """Fire the flow once against fresh fakes, as its schedule would at ``scheduled`` (ISO 8601;
    default now): (Run, the stopped fakes with what they recorded)."""
    import engine

    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    fired = {"scheduledTime": scheduled or now, "firedTime": now}
    fakes = start_fakes()
    try:
        result = engine.run_file(HERE / "flow.yaml", input=fired, params={"orders": BAD_ORDERS} if fail else {},
                                 state=work / "state.db", connections=write_connections(work, fakes))
    finally:
        fakes.stop()
    return result, fakes


def report(result: Any, fakes: Fakes) -> None:
    print(f"run {result.run_id}: {result.status}" + (f"  ({result.error['message']})" if result.error else ""))
    for path, step in result.steps.items():
        print(f"  {step.status:<9} {path}" + (f"  ({step.error['message']})" if step.error else ""))
    print("what the fakes received:")
    for sql in fakes.snowflake.sql():
        print(f"  snowflake    {' '.join((sql or '').split())[:90]}")
    for req in fakes.databricks.api.requests:
        print(f"  databricks   {req.method:<5} {req.path}" + (f" {req.json()}" if req.method == "POST" else ""))
    for call in fakes.montecarlo.calls():
        print(f"  montecarlo   {call.operation} {call.field} {call.arguments}")
    for req in fakes.sandbox.requests:
        body = req.json()
        if req.path.startswith("/v3/"):
            print(f"  sendgrid     {req.method} {req.path} {body['subject']!r}")
            for line in body["content"][0]["value"].splitlines():
                print(f"                 | {line}")
        else:
            print(f"  alert hook   {req.method} {req.path} {body}")


def quiet_the_sdks() -> None:
    """The SDKs' chatter about the fakes (no host metadata, newer enum values, Arrow copies)."""
    for name in ("databricks.sdk", "pycarlo"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


def main(argv: list[str]) -> int:
    fail = "--fail" in argv
    quiet_the_sdks()
    work = Path(tempfile.mkdtemp(prefix="data-pipeline-"))
    result, fakes = run_pipeline(work, fail=fail)
    report(result, fakes)
    print(f"(state database: {work / 'state.db'})")
    if fail:  # the catch path: the run Failed, and the alert went out
        return 0 if result.status == "Failed" and result.steps["alert"].status == "Succeeded" else 1
    return 0 if result.status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
