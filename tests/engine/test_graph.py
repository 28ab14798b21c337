"""`flowrun graph` writes text that Mermaid's own parser (the npm package, run with node) and
Graphviz's `dot` accept, whatever the action names and runAfter labels: keywords such as
``end`` and ``call``, ``-`` and ``_`` in names, and labels like ``Failed|TimedOut``."""
import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.graph import dot_text, mermaid_id, render
from engine.loader import load_text
from engine.registry import default_registry

ROOT = Path(__file__).parents[2]
MERMAID = ROOT / "tests" / "support" / "mermaid"
TRICKY = """
name: 'odd "name" \\ {x}'
actions:
  end: {type: Compose, inputs: 1}
  call: {type: Compose, inputs: 2, runAfter: {end: [Succeeded, Failed, TimedOut]}}
  click: {type: Compose, inputs: 3, runAfter: {call: [Failed, TimedOut]}}
  graph: {type: Compose, inputs: 4, runAfter: {click: [Skipped]}}
  a-b: {type: Compose, inputs: 5}
  a_b: {type: Compose, inputs: 6, runAfter: {a-b: [Succeeded]}}
  subgraph:
    type: Scope
    runAfter: {a_b: [Succeeded, Failed]}
    actions:
      style: {type: Compose, inputs: 7}
      classDef: {type: Compose, inputs: 8, runAfter: {style: [Failed]}}
  loop:
    type: Foreach
    foreach: "{{ [1, 2] }}"
    actions:
      direction: {type: Compose, inputs: "{{ item() }}"}
"""


def flows() -> list:
    reg = default_registry()
    out = [load_text(textwrap.dedent(TRICKY), "tricky.yaml", registry=reg)]
    for path in [*sorted((ROOT / "flows").glob("*.yaml")), *sorted((ROOT / "examples").rglob("*.yaml"))]:
        if path.name != "connections.yaml":
            try:
                out.append(load_text(path.read_text(), str(path), registry=reg))
            except Exception:  # a flow that needs its connections file is covered by the others
                continue
    return out


def mermaid_errors(texts: list[str]) -> list:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (.ci/run installs it)")
    if not (MERMAID / "node_modules" / "mermaid").is_dir():
        pytest.skip(f"Mermaid's parser is not installed: run `npm ci` in {MERMAID} (.ci/run does)")
    done = subprocess.run(["node", str(MERMAID / "check.mjs")], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dot_errors(texts: list[str]) -> list:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (.ci/run: apt-get install -y graphviz)")
    out = []
    for text in texts:
        done = subprocess.run(["dot", "-Tcanon"], input=text, capture_output=True, text=True, timeout=60)
        out.append(None if done.returncode == 0 and not done.stderr.strip() else done.stderr)
    return out


def test_mermaids_parser_accepts_every_bundled_flow_and_tricky_names():
    texts = [render(f, "mermaid") for f in flows()]
    assert len(texts) >= 3
    assert mermaid_errors(texts) == [None] * len(texts), texts


def test_graphviz_accepts_every_bundled_flow_and_tricky_names():
    texts = [render(f, "dot") for f in flows()]
    assert dot_errors(texts) == [None] * len(texts), texts


def test_labels_with_a_pipe_are_quoted_not_split():
    text = render(flows()[0], "mermaid")
    assert '|"Failed#124;TimedOut"|' in text and "-->|Failed|" not in text
    assert 'label="Failed|TimedOut"' in render(flows()[0], "dot")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_\-]{0,12}\Z"), min_size=2, max_size=40, unique=True))
def test_distinct_action_names_never_share_a_mermaid_id(names):
    assert len({mermaid_id(n) for n in names}) == len(names)


@pytest.mark.parametrize("text", ['a"b', "a\\b", "a\\", "line\nbreak", '\\"', "{}[];->"])
def test_dot_strings_escape_quotes_backslashes_and_newlines(text):
    errors = dot_errors([f'digraph "{dot_text(text)}" {{ "{dot_text(text)}" [label="{dot_text(text)}"]; }}'])
    assert errors == [None]


def test_random_names_and_labels_parse_in_both_languages():
    names = ["end", "call", "x-y", "x_y", "_", "A-", "style", "linkStyle", "o", "x", "default", "subgraph"]
    text = "\n".join(f"  {n}: {{type: Compose, inputs: 1, runAfter: {{{p}: [Failed, Skipped, TimedOut]}}}}"
                     for p, n in zip(names, names[1:]))
    flow = load_text(f"actions:\n  {names[0]}: {{type: Compose, inputs: 0}}\n{text}\n", "r.yaml",
                     registry=default_registry())
    assert mermaid_errors([render(flow, "mermaid")]) == [None]
    assert dot_errors([render(flow, "dot")]) == [None]
