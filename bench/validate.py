"""Validation benchmark: how long loading and checking a flow takes, beside baselines measured
in the same run.

    python bench/validate.py            # prints a table; numbers go into the README

Rows:
- parse: the 1,000-action flow through ``engine.yamlpos`` (libyaml, positions kept), beside
  PyYAML's pure-Python ``SafeLoader`` on the same text (the parser flowrun used before);
- validate: ``engine.loader.load_text`` of a 1,000-action chain (schema, model, plan,
  expression checks; every template analysed again each time, as in a fresh process), beside the one-branch-per-node-type schema (``allOf``/``if`` over every
  node type) that the loader used to validate every action against, on its own;
- cached: ``Engine.load`` of the same file a second time (its content hash is in the state DB);
- process: ``flowrun run flows/hello.yaml`` and ``flowrun validate`` as whole processes (wall
  and CPU time), beside ``flowrun --help`` (the CLI's own floor) and ``python -c pass``.
Targets (issue 8): validating 1,000 actions ≤ 100 ms; the whole ``flowrun run`` ≤ 250 ms.

    python bench/validate.py --before REF    # also times REF's code (git archive) in this run

``--before`` runs the same processes with an older commit's ``engine``, ``nodes`` and ``flows``
(in their own working directory, first on ``sys.path``): the before/after figures then come from one run on one machine.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chain_text(n: int = 1000) -> str:
    lines = ["actions:"]
    for i in range(n):
        lines.append(f"  a{i}:")
        lines.append("    type: Compose")
        lines.append(f"    inputs: \"{{{{ {i} }}}}\"" if i == 0 else f"    inputs: \"{{{{ outputs('a{i - 1}') }}}}\"")
        if i:
            lines.append(f"    runAfter: {{a{i - 1}: [Succeeded]}}")
    return "\n".join(lines) + "\n"


def best(fn, repeat: int = 7) -> float:
    """Median of ``repeat`` timings, in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def process_ms(args: list[str], cwd: Path, repeat: int = 9, code: Path | None = None) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of a process, in milliseconds.
    On a shared machine the CPU time is the steadier figure: it does not count waiting.
    ``code``: a folder whose ``engine`` and ``nodes`` are imported instead of this checkout's."""
    env = dict(os.environ)
    if code is not None:  # its folder first on sys.path ("" is the working directory for -c)
        env["PYTHONPATH"], cwd = str(code), code
    subprocess.run(args, cwd=cwd, env=env, capture_output=True)  # warm the page cache and .pyc files
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(args, cwd=cwd, env=env, capture_output=True, check=False)
        walls.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def checkout(ref: str, into: Path) -> Path:
    """``engine``, ``nodes`` and ``flows`` of commit ``ref``, extracted under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "engine", "nodes", "flows"],
                             capture_output=True, check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    before = sys.argv[sys.argv.index("--before") + 1] if "--before" in sys.argv else None
    import yaml
    from jsonschema import Draft202012Validator

    from engine import yamlpos
    from engine.api import Engine
    from engine.loader import load_text, tools
    from engine.registry import default_registry
    from engine.schema import flow_schema

    text = chain_text()
    registry = default_registry()
    load_text(text, "chain.yaml", registry=registry)  # build the compiled validators once
    analyses = tools(registry)[1]._analyses
    rows: list[tuple[str, float, str, float]] = []

    shapes = tools(registry)[1]._shapes

    def cold() -> None:
        analyses.clear()  # every template analysed again, as in a fresh process
        shapes.clear()
        load_text(text, "chain.yaml", registry=registry)

    def every_parse() -> None:  # as if no two templates shared a shape (the worst case)
        analyses.clear()
        load_text(text, "chain.yaml", registry=registry)
        shapes.clear()

    rows.append(("parse 1,000 actions (yamlpos, libyaml)", best(lambda: yamlpos.load(text, "chain.yaml")),
                 "yaml.SafeLoader (pure Python)", best(lambda: yaml.load(text, Loader=yaml.SafeLoader), 3)))
    data = yaml.safe_load(text)
    every_type = Draft202012Validator(flow_schema(registry))
    rows.append(("validate 1,000 actions (load_text)", best(cold),
                 "allOf/if schema over all types", best(lambda: list(every_type.iter_errors(data)), 3)))
    import engine.expressions as expressions

    real = expressions.Evaluator._analyze_by_shape
    expressions.Evaluator._analyze_by_shape = expressions.Evaluator._analyze  # type: ignore[method-assign]
    try:
        rows.append(("validate 1,000 actions, every template parsed", best(every_parse), "", 0.0))
    finally:
        expressions.Evaluator._analyze_by_shape = real  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "chain.yaml"
        path.write_text(text)
        engine = Engine(Path(d) / "state.db", registry=registry)
        engine.load(path)
        rows.append(("load 1,000 actions, hash cached (Engine.load)", best(lambda: engine.load(path)),
                     "not cached (load_text)", best(cold)))
        engine.close()
        flowrun = str(Path(sys.executable).with_name("flowrun"))
        state = str(Path(d) / "run.db")
        run_wall, run_cpu = process_ms([flowrun, "--state", state, "run", "flows/hello.yaml"], ROOT)
        val_wall, val_cpu = process_ms([flowrun, "validate", "flows/hello.yaml"], ROOT)
        help_wall, help_cpu = process_ms([flowrun, "--help"], ROOT)
        rows.append(("flowrun run flows/hello.yaml (process, wall)", run_wall, "flowrun --help (wall)", help_wall))
        rows.append(("flowrun run flows/hello.yaml (process, CPU)", run_cpu, "flowrun --help (CPU)", help_cpu))
        rows.append(("flowrun validate flows/hello.yaml (process, wall)", val_wall, "python -c pass (wall)",
                     process_ms([sys.executable, "-c", "pass"], ROOT)[0]))
        rows.append(("flowrun validate flows/hello.yaml (process, CPU)", val_cpu, "", 0.0))
        if before:
            old = checkout(before, Path(d) / "before")
            main_py = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]
            new_wall, new_cpu = process_ms(main_py + ["--state", state, "run", "flows/hello.yaml"], ROOT)
            old_wall, old_cpu = process_ms(main_py + ["--state", state + ".old", "run", "flows/hello.yaml"], ROOT,
                                           code=old)
            rows.append(("flowrun run flows/hello.yaml (wall)", new_wall, f"at {before} (wall)", old_wall))
            rows.append(("flowrun run flows/hello.yaml (CPU)", new_cpu, f"at {before} (CPU)", old_cpu))

    width = max(len(r[0]) for r in rows)
    bwidth = max(len(r[2]) for r in rows)
    print(f"{'measure':<{width}}  {'ms':>8}   {'baseline':<{bwidth}}  {'ms':>8}")
    for name, ms, base, base_ms in rows:
        print(f"{name:<{width}}  {ms:8.1f}   {base:<{bwidth}}  {base_ms:8.1f}")


if __name__ == "__main__":
    main()
