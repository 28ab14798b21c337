"""Loading a Logic Apps definition, beside the same flow in flowrun's YAML, in the same run.

    python bench/definitions.py

A 1,000-action chain of Compose actions reading the one before (``@outputs('a0')``), as a
Standard ``workflow.json`` and as the YAML ``flowrun convert`` writes from it. Each row is
the median of several ``engine.loader.load_text`` calls (schema, model, plan, expression
checks; no cache: a JSON definition is never cached, it reads files beside it). The JSON
text is parsed twice (``json`` for the values, libyaml for the positions): the ``json`` row
shows what that second parse costs.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCHEMA = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"


def definition(n: int = 1000) -> str:
    actions = {}
    for i in range(n):
        actions[f"a{i}"] = {"type": "Compose", "inputs": f"@outputs('a{i - 1}')" if i else 1,
                            "runAfter": {f"a{i - 1}": ["Succeeded"]} if i else {}}
    return json.dumps({"definition": {"$schema": SCHEMA, "contentVersion": "1.0.0.0",
                                      "triggers": {"manual": {"type": "Request", "kind": "Http"}},
                                      "actions": actions}, "kind": "Stateful"}, indent=2)


def median_ms(fn, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    from engine import safejson, yamlpos
    from engine.convert import convert
    from engine.loader import load_text

    text = definition()
    yaml_text = convert(text, "chain/workflow.json")
    load_text(text, "chain/workflow.json")  # imports, compiled schemas: not part of the figures
    load_text(yaml_text, "chain.yaml")
    rows = [
        ("load workflow.json (1,000 actions)", median_ms(lambda: load_text(text, "chain/workflow.json"))),
        ("load the converted YAML (baseline)", median_ms(lambda: load_text(yaml_text, "chain.yaml"))),
        ("  of which: libyaml positions of the JSON", median_ms(lambda: yamlpos.load(text, "x.json"))),
        ("  of which: json values of the JSON", median_ms(lambda: safejson.loads(text))),
    ]
    width = max(len(r[0]) for r in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f} ms")
    print(f"{'ratio definition / YAML':<{width}}  {rows[0][1] / rows[1][1]:8.2f}")


if __name__ == "__main__":
    main()
