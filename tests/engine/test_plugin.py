"""The node contract: a third-party package (tests/plugins/flowrun_contract) gets loops,
nested blocks, declared variables and run control from declarations alone."""
import textwrap

import pytest

import engine
import nodes.core
import nodes.http
from engine.errors import FlowError
from engine.loader import load_text
from engine.plugin import Context, Node, Status, Variables
from engine.registry import Registry
from tests.plugins import flowrun_contract


@pytest.fixture(scope="module")
def registry():
    reg = Registry()
    for module in (nodes.core, nodes.http, flowrun_contract):
        reg.add_module(module)
    return reg


@pytest.fixture
def run(tmp_path, registry):
    def go(text: str):
        path = tmp_path / "flow.yaml"
        path.write_text(textwrap.dedent(text))
        return engine.run_file(path, state=tmp_path / "state.db", registry=registry)
    return go


def test_a_third_party_loop_runs_its_block_per_item_with_item_and_result(run):
    result = run("""
        actions:
          rep:
            type: contract.Repeat
            over: [a, b, c]
            actions:
              shout: {type: Compose, inputs: "{{ item() | upper }}-{{ iterationIndexes('rep') }}"}
          all: {type: Compose, inputs: "{{ result('rep')[0].outputs | map(attribute='outputs') | list }}",
                runAfter: {rep: [Succeeded]}}
    """)
    assert result.status == Status.SUCCEEDED
    assert result.steps["all"].outputs == ["A-0", "B-1", "C-2"]
    assert result.steps["rep[1]/shout"].outputs == "B-1"


def test_placement_rules_apply_to_a_third_party_loop(registry):
    with pytest.raises(FlowError) as info:
        load_text(textwrap.dedent("""
            actions:
              rep:
                type: contract.Repeat
                over: [1]
                actions:
                  stop: {type: contract.Stop}
        """), "f.yaml", registry=registry)
    assert "contract.Stop is not allowed inside a loop (contract.Repeat 'rep')" in str(info.value)


def test_item_functions_name_a_third_party_loop_as_an_enclosing_loop(registry):
    with pytest.raises(FlowError) as info:
        load_text(textwrap.dedent("""
            actions:
              rep:
                type: contract.Repeat
                over: [1]
                actions:
                  x: {type: Compose, inputs: "{{ items('nope') }}"}
        """), "f.yaml", registry=registry)
    assert "enclosing loops: rep" in str(info.value)


def test_variables_declared_by_a_third_party_node_are_known_to_the_validator(run, registry):
    result = run("""
        actions:
          count: {type: contract.Counter, inputs: {name: n}}
          bump: {type: contract.Bump, inputs: {name: n}, runAfter: {count: [Succeeded]}}
          read: {type: Compose, inputs: "{{ variables('n') }}", runAfter: {bump: [Succeeded]}}
    """)
    assert result.steps["read"].outputs == 1
    with pytest.raises(FlowError) as info:
        load_text("actions:\n  read: {type: Compose, inputs: \"{{ variables('m') }}\"}\n", "f.yaml",
                  registry=registry)
    assert "unknown variable 'm'" in str(info.value)
    assert "contract.Counter" in str(info.value) and "InitializeVariable" in str(info.value)


def test_a_node_ends_the_run_through_the_terminate_capability(run):
    result = run("""
        actions:
          stop: {type: contract.Stop}
          never: {type: Compose, inputs: 1, runAfter: {stop: [Succeeded]}}
    """)
    assert result.status == Status.CANCELLED
    assert result.steps["never"].status == Status.SKIPPED


def test_the_context_offers_named_capabilities_not_the_executor():
    public = {n for n in dir(Context) if not n.startswith("_")}
    assert {"evaluate", "run_block", "skip_block", "variables", "terminate", "respond", "run_child"} <= public
    assert "run" not in public


@pytest.mark.parametrize("declared, expected", [
    ({}, True),
    ({"holds_slot": False}, False),
    ({"nested": ("actions",)}, False),  # a container never holds a slot: what runs inside does
])
def test_which_nodes_take_a_concurrency_slot(declared, expected):
    node = type("N", (Node,), {"type": "x.N", **declared})
    assert node.takes_slot() is expected


@pytest.mark.parametrize("text, status", [
    ("Succeeded", Status.SUCCEEDED), ("failed", Status.FAILED), ("TIMEDOUT", Status.TIMEDOUT),
])
def test_status_names_are_read_in_any_letter_case(text, status):
    assert Status.of(text) is status and status == status.value


def test_status_knows_what_is_terminal_and_what_is_a_failure():
    assert {s for s in Status if s.is_terminal} == {"Succeeded", "Failed", "Skipped", "TimedOut", "Cancelled"}
    assert {s for s in Status if s.is_failure} == {"Failed", "TimedOut"}
    with pytest.raises(ValueError, match="unknown status"):
        Status.of("Done")


def test_variables_keep_a_value_and_a_declared_type():
    v = Variables()
    v.declare("n", "integer", 1)
    v["n"] += 1
    assert v.get("n") == 2 and v.kind("n") == "integer" and "n" in v and "m" not in v


# -- every built-in node declares its transport honestly -------------------------------------------
# what in a node's code means the network guard cannot see its calls
UNSEEN_MARKERS = {"native": ("confluent_kafka", "ctypes", "grpc"),
                  "subprocess": ("subprocess", "multiprocessing", "create_subprocess_exec", "os.fork",
                                 "posix_spawn", "dbtRunner")}


def _reachable_source(node: type) -> str:
    """The source of ``node`` and of every function and class of its vendor package it reaches
    by name (its module's globals, transitively): the code its ``run`` can call."""
    import ast
    import inspect
    import sys

    package = node.__module__.rsplit(".", 1)[0] if node.__module__.count(".") > 1 else node.__module__
    seen: set[int] = set()
    texts: list[str] = []
    todo: list = [node]
    while todo:
        obj = todo.pop()
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            obj = type(obj)  # an instance (a vendor table): its class
        if id(obj) in seen or not (getattr(obj, "__module__", "") or "").startswith(package):
            continue
        seen.add(id(obj))
        text = inspect.getsource(obj)
        texts.append(text)
        names = vars(sys.modules[obj.__module__])
        for used in ast.walk(ast.parse(inspect.cleandoc(text) if text[:1].isspace() else text)):
            if isinstance(used, ast.Name) and used.id in names:
                todo.append(names[used.id])
    return "\n".join(texts)


def test_every_builtin_node_declares_a_transport_the_network_guard_can_or_cannot_see_honestly():
    """``transport`` is "python" unless the code a node reaches (its class, and the functions and
    classes of its vendor package it names, transitively) goes out through a native library or a
    child process; and a node that declares one of those does."""
    from engine.registry import default_registry

    declared = {}
    for node in default_registry().nodes.values():
        if not node.__module__.startswith("nodes."):
            continue
        assert node.transport in ("python", "native", "subprocess"), node.type
        source = _reachable_source(node)
        found = [kind for kind, markers in UNSEEN_MARKERS.items() if any(m in source for m in markers)]
        if node.transport == "python":
            assert not found, f"{node.type} reaches out through {found}: declare transport = {found[0]!r}"
        else:
            assert node.transport in found, f"{node.type} declares transport {node.transport!r} but its code shows none"
        declared[node.type] = node.transport
    assert declared["kafka.Produce"] == "native" and declared["dbt.Command"] == "subprocess"
    assert declared["snowflake.Query"] == "python"  # its vendored urllib3 is patched like urllib3
