"""engine/loader.py under hostile input: any text is a Flow or problem lines, never a traceback.

Two hypothesis fuzzers (bounded to a few seconds each) and the corpus of files that once
crashed the loader (tests/engine/corpus/: each file's first line says what it must report).
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from jsonschema import Draft202012Validator

from engine.errors import FlowError
from engine.loader import load_text
from engine.model import Flow
from engine.registry import default_registry
from engine.schema import flow_schema

ROOT = Path(__file__).parents[2]
CORPUS = Path(__file__).parent / "corpus"
SEEDS = [p.read_text() for p in sorted([*ROOT.glob("flows/*.yaml"), *ROOT.glob("examples/**/*.yaml")])
         if p.name != "connections.yaml"]
TYPES = default_registry().type_names()
PUBLISHED = Draft202012Validator(flow_schema(default_registry()))


def outcome(text: str, file: str = "fuzz.yaml") -> list[str]:
    """The problem lines for ``text`` ([] for a valid flow); fails on anything but FlowError."""
    try:
        flow = load_text(text, file)
    except FlowError as exc:
        assert exc.problems, "a FlowError names at least one problem"
        for p in exc.problems:
            assert p.file == file and p.line >= 1 and p.column >= 1 and p.message, p
            assert "internal error" not in p.message, p
        return [str(p) for p in exc.problems]
    assert isinstance(flow, Flow)
    return []


FUZZ = settings(deadline=None, max_examples=1000, suppress_health_check=list(HealthCheck), print_blob=True)
NASTY = ["\x00", "\x01", "\x1b", "\x7f", "\ufeff", "\ud7ff", "\t", "\r", "\n", ":", "- ", "&a ", "*a", "!!",
         "!!timestamp ", "!!binary ", "!!python/object:os.system ", "<<: ", "{", "}", "[", "]", "'", '"',
         "{{", "}}", "{%", "%}", "#", "|", ">", "? ", "%YAML 1.1\n", "---\n", "...\n", "9" * 5000, "PT", "P1D"]


@FUZZ
@given(seed=st.sampled_from(SEEDS), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 8), st.one_of(st.sampled_from(NASTY), st.text(max_size=6))),
    min_size=1, max_size=6))
def test_a_mangled_flow_file_gives_problem_lines_never_a_traceback(seed, edits):
    text = seed
    for where, cut, insert in edits:
        i = int(where * len(text))
        text = text[:i] + insert + text[i + cut:]
    outcome(text)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["{{ 1 }}", "{{ outputs('a') }}", "{{ variables('v') }}",
                                                           "{{ item() }}", "{{ x | nope }}", "{{ ", "{% for %}",
                                                           "PT1S", "P", "PT1H", "Succeeded", "failed", "a"]))


def actions(children):
    action = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(TYPES), st.sampled_from(["Bogus", "", "compose"]),
                                                      scalars)},
                                   optional={"inputs": children, "runAfter": st.one_of(
                                       st.dictionaries(st.sampled_from(["a", "b", "c", "zz"]),
                                                       st.one_of(st.lists(scalars, max_size=3), scalars), max_size=3),
                                       scalars),
                                             "timeout": scalars, "retryPolicy": children, "limit": children,
                                             "actions": children, "else": children, "cases": children,
                                             "default": children, "foreach": scalars, "expression": children,
                                             "name": scalars, "value": children, "connection": scalars})
    return st.dictionaries(st.sampled_from(["a", "b", "c", "d", "with space", "1"]), st.one_of(action, scalars),
                           max_size=4)


values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=3),
                                                          st.dictionaries(st.text(max_size=5), children, max_size=3),
                                                          actions(children)), max_leaves=30)


@FUZZ
@given(doc=st.fixed_dictionaries({"actions": st.one_of(actions(values), values)},
                                 optional={"triggers": values, "parameters": values, "outputs": values, "name": values}))
def test_a_random_flow_shaped_document_gives_problem_lines_never_a_traceback(doc):
    text = yaml.safe_dump(doc, allow_unicode=True)
    if outcome(text) == []:  # the loader accepts it: so does the schema editors use
        assert [e.message for e in PUBLISHED.iter_errors(yaml.safe_load(text))] == []


def corpus() -> list[Path]:
    """Files that once crashed the loader; the first line says what it reports ("# expect:"
    alone: nothing, the file is valid)."""
    return sorted(CORPUS.glob("*.yaml"))


def invalid(path: Path) -> bool:
    return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()[0].strip() != "# expect:"


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_every_file_that_once_crashed_the_loader_is_reported_at_once(path):
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    expected = text.splitlines()[0].removeprefix("# expect:").strip()
    started = time.perf_counter()
    problems = outcome(text, path.name)
    assert time.perf_counter() - started < 1.0
    if not expected:  # a valid flow that once crashed the checks
        assert problems == []
        return
    assert any(expected in p for p in problems), problems


def test_serve_skips_every_crasher_and_still_serves_the_good_flow(tmp_path):
    from engine.api import Engine
    from engine.listener.triggers import load_folder

    folder = tmp_path / "flows"
    folder.mkdir()
    for path in corpus():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "good.yaml").write_text((ROOT / "flows" / "hello.yaml").read_text())
    (folder / "latin1.yaml").write_bytes(b"actions:\n  a: {type: Compose, inputs: caf\xe9}\n")
    engine = Engine(tmp_path / "state.db")
    try:
        table = load_folder(engine, folder)
    finally:
        engine.close()
    assert sorted(table.flows) == sorted(["hello"] + [p.stem for p in corpus() if not invalid(p)])
    assert sorted(Path(f).name for f in table.problems) == sorted([p.name for p in corpus() if invalid(p)]
                                                                  + ["latin1.yaml"])
