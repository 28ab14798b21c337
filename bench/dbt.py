"""dbt.Command overhead: `dbt build` through a flow beside the same `dbt build` run directly,
measured in the same run, alternating, on the test project (tests/nodes/dbt_project, DuckDB).

    python bench/dbt.py [--rounds 5]     # prints a table; numbers go into the README

Both sides run the same command line (the flow's `dbt build` arguments, a fresh target folder
each time) as a fresh process: "direct" is the `dbt` executable, "flowrun" is
`engine.run_file` on a one-action flow (engine start, state database, child process, log
streaming, run_results.json parsing). Target: flowrun within 10% of direct.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is named dbt.py: its folder must not be on sys.path, or it shadows the dbt package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
PROJECT = ROOT / "tests" / "nodes" / "dbt_project"
SELECT = ["--exclude", "tag:slow", "tag:leaky"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    import yaml

    import engine

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = work / "project"
        shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
        os.environ.update(BENCH_DBT_SECRET="bench-secret-value", DBT_ENV_SECRET_PASSWORD="bench-secret-value",
                          SHOP_DUCKDB_PATH=str(work / "shop.duckdb"), DBT_SEND_ANONYMOUS_USAGE_STATS="False",
                          DO_NOT_TRACK="1", DBT_VERSION_CHECK="False", DBT_USE_COLORS="False")
        (work / "connections.yaml").write_text(yaml.safe_dump({"connections": {"dbt": {
            "kind": "dbt", "settings": {"project_dir": str(project), "profiles_dir": str(project),
                                        "artifacts_dir": str(work / "artifacts"),
                                        "env": {"SHOP_DUCKDB_PATH": str(work / "shop.duckdb")}},
            "secrets": {"password": "BENCH_DBT_SECRET"}}}}))
        (work / "flow.yaml").write_text(yaml.safe_dump({
            "triggers": {"manual": {"type": "Manual"}},
            "actions": {"build": {"type": "dbt.Command", "connection": "dbt",
                                  "inputs": {"command": "build", "exclude": "tag:slow tag:leaky"}}}}))
        dbt = str(Path(sys.executable).with_name("dbt"))

        def direct(i: int) -> float:
            target = work / "direct" / str(i)
            start = time.perf_counter()
            subprocess.run([dbt, "build", "--project-dir", str(project), "--target-path", str(target),
                            "--log-path", str(target), "--profiles-dir", str(project), *SELECT],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=project)
            return time.perf_counter() - start

        def flow(i: int) -> float:
            start = time.perf_counter()
            run = engine.run_file(work / "flow.yaml", state=work / f"state{i}.db",
                                  connections=work / "connections.yaml")
            elapsed = time.perf_counter() - start
            assert run.steps["build"].error["code"] == "DbtFailed", run.steps["build"].error
            return elapsed

        direct(-1), flow(-1)  # warm the page cache and .pyc files
        d, f = [], []
        for i in range(rounds):
            d.append(direct(i))
            f.append(flow(i))
    md, mf = statistics.median(d), statistics.median(f)
    print(f"dbt build on tests/nodes/dbt_project, {rounds} rounds, median seconds")
    print(f"{'direct dbt build':<22}{md:>8.2f}")
    print(f"{'dbt.Command (flowrun)':<22}{mf:>8.2f}   overhead {100 * (mf - md) / md:+.1f}% (target within 10%)")


if __name__ == "__main__":
    main()
