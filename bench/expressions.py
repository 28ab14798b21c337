"""Expression benchmark: an `@` (WDL) expression beside its Jinja equivalent, same run.

    python bench/expressions.py          # prints a table; figures go into the README

Each pair computes the same value through ``Evaluator.evaluate`` (the engine's one entry
point: budget set up, scope functions bound, compiled code cached by text), as an action's
input is evaluated at run time. Steady state: the best of 5 rounds of N evaluations, after
one warm-up. The target: each `@` expression within 2x of its Jinja equivalent.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.expressions import WORKFLOW_FUNCTIONS, Evaluator  # noqa: E402

BODY = {"customer": {"name": "Ada", "tier": "gold"}, "name": "Ada", "total": 120.5, "qty": 3, "status": "open",
        "first": "Ada", "last": "Lovelace", "when": "2024-05-06T07:08:09Z", "items": [1, 2, 3, 4]}

PAIRS = [
    ("member access", "@triggerBody()?['customer']?['name']", "{{ triggerBody().customer.name }}"),
    ("interpolation", "Hello @{triggerBody()?['name']}, you owe @{triggerBody()?['total']}",
     "Hello {{ triggerBody().name }}, you owe {{ triggerBody().total }}"),
    ("arithmetic", "@add(mul(triggerBody()?['qty'], 2), 1)", "{{ triggerBody().qty * 2 + 1 }}"),
    ("condition", "@and(greater(triggerBody()?['total'], 100), equals(triggerBody()?['status'], 'open'))",
     "{{ triggerBody().total > 100 and triggerBody().status == 'open' }}"),
    ("strings", "@toUpper(concat(triggerBody()?['first'], ' ', triggerBody()?['last']))",
     "{{ (triggerBody().first ~ ' ' ~ triggerBody().last) | upper }}"),
    ("date format", "@formatDateTime(triggerBody()?['when'], 'yyyy-MM-dd')",
     "{{ triggerBody().when | dateformat('%Y-%m-%d') }}"),
    ("length", "@length(triggerBody()?['items'])", "{{ triggerBody()['items'] | length }}"),
    ("variable", "@variables('count')", "{{ variables('count') }}"),
]


class Scope:
    def __init__(self) -> None:
        self._names = {n: (lambda *a: None) for n in WORKFLOW_FUNCTIONS}
        self._names.update(triggerBody=lambda: BODY, variables=lambda name: 42)

    def names(self, functions: tuple[str, ...]) -> dict:
        return self._names


def per_call_us(evaluator: Evaluator, texts: tuple[str, str], scope: Scope, n: int) -> tuple[float, float]:
    """Best per-call time of each text; rounds alternate between the two, so a load spike on
    a shared machine hits both alike."""
    for text in texts:
        evaluator.evaluate(text, scope)
    best = [float("inf"), float("inf")]
    for _ in range(7):
        for i, text in enumerate(texts):
            t = time.perf_counter()
            for _ in range(n):
                evaluator.evaluate(text, scope)
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0] / n * 1e6, best[1] / n * 1e6


def compile_us(text: str, n: int = 200) -> float:
    """First evaluation of a text never seen (a fresh evaluator each time): parse and compile included."""
    evaluators = [Evaluator() for _ in range(n)]
    t = time.perf_counter()
    for e in evaluators:
        e.evaluate(text, Scope())
    return (time.perf_counter() - t) / n * 1e6


def main(n: int = 5_000) -> None:
    evaluator = Evaluator()
    scope = Scope()
    rows = []
    for name, wdl, jinja in PAIRS:
        a, b = evaluator.evaluate(wdl, scope), evaluator.evaluate(jinja, scope)
        assert a == b or str(a) == str(b), (name, a, b)
        w, j = per_call_us(evaluator, (wdl, jinja), scope, n)
        rows.append((name, j, w, w / j))
    print(f"{'expression':<16}{'Jinja us':>10}{'@ us':>10}{'@/Jinja':>10}")
    for name, j, w, r in rows:
        print(f"{name:<16}{j:>10.2f}{w:>10.2f}{r:>9.2f}x")
    worst = max(r for *_, r in rows)
    print(f"worst ratio {worst:.2f}x (target: within 2x)")
    print("first evaluation of a new text (parse + compile + run), one pair:")
    name, wdl, jinja = PAIRS[3]
    print(f"  {name}: Jinja {compile_us(jinja):.0f} us, @ {compile_us(wdl):.0f} us")


if __name__ == "__main__":
    main()
