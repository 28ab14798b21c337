"""Validation: every kind of problem is reported as file:line:column path: message, all at once."""
import textwrap

import pytest

from engine import yamlpos
from engine.errors import FlowError
from engine.loader import load_text
from engine.connections import Connections
from engine.registry import default_registry


def problems(text: str, connections=None) -> list[str]:
    with pytest.raises(FlowError) as info:
        load_text(textwrap.dedent(text), "flows/x.yaml", connections=connections)
    return [str(p) for p in info.value.problems]


def one_problem(text: str, **kw) -> str:
    found = problems(text, **kw)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("text, expected", [
    ("actions: [a, b\n", "flows/x.yaml:2:1 invalid YAML"),
    ("", "the file is empty"),
    ("- just\n- a list\n", "a flow must be a mapping"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       a: {type: Compose, inputs: 2}
     """, "flows/x.yaml:4:3 actions.a: duplicate key 'a' (first at line 3)"),
    ("""
     actions:
       a: {type: Compse, inputs: 1}
     """, "flows/x.yaml:3:13 actions.a.type: unknown action type 'Compse' (did you mean 'Compose'?)"),
    ("""
     actions:
       a: {type: Compose, inputs: 1, runafter: {}}
     """, "actions.a.runafter: unknown key 'runafter' (did you mean 'runAfter'?)"),
    ("""
     actions:
       a: {type: Http, inputs: {method: GET, uri: "http://x", timeout: 5}}
     """, "actions.a.inputs.timeout: 5 is not of type 'string'"),
    ("""
     actions:
       a: {type: Http, inputs: {method: GET}}
     """, "actions.a.inputs: 'uri' is required"),
    ("""
     actions:
       a: {type: Compose, inputs: 1, runAfter: {b: [Succeeded]}}
       bee: {type: Compose, inputs: 1}
     """, "actions.a.runAfter.b: unknown action 'b'"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       s:
         type: Scope
         actions:
           inner: {type: Compose, inputs: 1, runAfter: {a: [Succeeded]}}
     """, "'a' is not in the same scope as 'inner'"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       b: {type: Compose, inputs: 1, runAfter: {a: [Done]}}
     """, "actions.b.runAfter.a.0: 'Done' is not one of"),
    ("""
     actions:
       a: {type: Compose, inputs: 1, runAfter: {c: [Succeeded]}}
       b: {type: Compose, inputs: 1, runAfter: {a: [Succeeded]}}
       c: {type: Compose, inputs: 1, runAfter: {b: [Succeeded]}}
     """, "cycle in runAfter: "),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       s:
         type: Scope
         actions:
           a: {type: Compose, inputs: 2}
     """, "duplicate action name 'a'"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ 1 + }}"}
     """, "actions.a.inputs: syntax error in '{{ 1 + }}'"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ triggerbody() }}"}
     """, "unknown name 'triggerbody' (did you mean 'triggerBody'?)"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ body('nope') }}"}
     """, "actions.a.inputs: unknown action 'nope'"),
    ("""
     actions:
       a: {type: Compose, inputs: 1}
       b: {type: Compose, inputs: "{{ body('a') }}"}
     """, "'a' is not guaranteed to have finished before 'b' runs"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ variables('count') }}"}
     """, "unknown variable 'count'"),
    ("""
     parameters: {region: {type: string, defaultValue: eu}}
     actions:
       a: {type: Compose, inputs: "{{ parameters('regoin') }}"}
     """, "unknown parameter 'regoin' (did you mean 'region'?)"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ items('loop') }}"}
     """, "'loop' is not a loop around 'a'"),
    ("""
     actions:
       s:
         type: Scope
         actions:
           v: {type: InitializeVariable, inputs: {variables: [{name: v, type: string}]}}
     """, "InitializeVariable is only allowed at the top level"),
    ("""
     actions:
       loop:
         type: Foreach
         foreach: [1]
         actions:
           stop: {type: Terminate, inputs: {runStatus: Failed}}
     """, "Terminate is not allowed inside a loop (Foreach"),
    ("""
     actions:
       a: {type: Compose, inputs: 1, timeout: 30s}
     """, "actions.a.timeout: '30s' is not an ISO-8601 duration such as PT30S"),
    ("""
     actions:
       sw:
         type: Switch
         expression: x
         cases:
           one: {case: 1, actions: {}}
           uno: {case: 1, actions: {}}
     """, "case value 1 is also used by case 'one'"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ lipsum(5) }}"}
     """, "unknown name 'lipsum'"),
    ("""
     actions:
       a: {type: Compose, inputs: "{{ 'x' | nosuchfilter }}"}
     """, "unknown filter 'nosuchfilter'"),
    ("""
     actions:
       call: {type: Http, inputs: {method: GET, uri: "http://x"}, connection: api}
     """, "actions.call.connection: unknown connection 'api'"),
])
def test_each_problem_kind_is_reported(text, expected):
    assert any(expected in p for p in problems(text, connections=Connections.empty(default_registry()))), \
        problems(text, connections=Connections.empty(default_registry()))


@pytest.mark.parametrize("text, expected", [
    ("actions:\n  c: {type: If, expression: true, else: [1]}\n", "actions.c.else"),
    ("actions:\n  s: {type: Switch, expression: 1, cases: {}, default: oops}\n", "actions.s.default"),
    ("actions:\n  a: &x {type: Compose, inputs: *x}\n", "recursive anchor"),
])
def test_malformed_structures_are_problems_not_crashes(text, expected):
    assert any(expected in p for p in problems(text))


def test_a_yaml_alias_bomb_is_one_problem(monkeypatch):
    """The budget itself is tested in test_yamlpos; here the loader reports it and stops."""
    monkeypatch.setattr(yamlpos, "MAX_VALUES", 1_000)
    bomb = ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nactions: {}\n")
    assert [p.split(" ", 1)[1] for p in problems(bomb)] == [
        "the file expands to more than 1,000 values (aliases repeating aliases?)"]


def test_every_problem_at_once_sorted_one_line_each():
    found = problems("""
        actions:
          first: {type: Compse, inputs: x}
          second:
            type: Compose
            inputs: "{{ body('frist') }}"
            runAfter: {first: [Succeeded]}
          third: {type: Compose, inputs: 1, runAfter: {ghost: [Failed]}}
    """)
    assert [p.split(" ", 1)[0] for p in found] == ["flows/x.yaml:3:17", "flows/x.yaml:6:13", "flows/x.yaml:8:48"]
    assert all("\n" not in p for p in found)


def test_types_and_statuses_are_case_insensitive_as_in_logic_apps():
    flow = load_text(textwrap.dedent("""
        actions:
          a: {type: compose, inputs: 1}
          b: {type: COMPOSE, inputs: 2, runAfter: {a: [FAILED, succeeded]}}
    """))
    assert flow.actions["b"].type == "Compose"
    assert flow.actions["b"].run_after == {"a": ("Failed", "Succeeded")}


def test_templates_are_accepted_where_the_schema_wants_other_types():
    flow = load_text(textwrap.dedent("""
        parameters: {n: {type: int, defaultValue: 3}}
        actions:
          loop:
            type: Foreach
            foreach: "{{ triggerBody() }}"
            concurrency: "{{ parameters('n') }}"
            actions: {}
    """))
    assert "loop" in flow.actions


def test_expressions_may_read_upstream_actions_across_scopes():
    flow = load_text(textwrap.dedent("""
        actions:
          fetch: {type: Compose, inputs: 1}
          try:
            type: Scope
            runAfter: {fetch: [Succeeded]}
            actions:
              use: {type: Compose, inputs: "{{ body('fetch') }}"}
          after:
            type: Compose
            inputs: "{{ body('use') }} {{ result('try') }}"
            runAfter: {try: [Succeeded, Failed]}
          poll:
            type: Until
            expression: "{{ body('step') == 1 }}"
            actions:
              step: {type: Compose, inputs: 1}
    """))
    assert set(flow.actions) == {"fetch", "try", "use", "after", "poll", "step"}


def test_connection_of_the_wrong_kind_is_reported(tmp_path, monkeypatch):
    conns = tmp_path / "connections.yaml"
    conns.write_text("connections:\n  api: {kind: http, settings: {auth: none}}\n")
    registry = default_registry()
    node = next(n for n in sorted(registry.nodes.values(), key=lambda n: n.type)
                if n.connection and n.connection != "http")
    other = node.connection
    found = problems(f"""
        actions:
          a: {{type: "{node.type}", inputs: {{}}, connection: api}}
    """, connections=Connections.load(conns, registry))
    assert any(f"connection 'api' is of kind 'http', '{node.type}' needs '{other}'" in p for p in found)


# -- vendor SDKs are extras ----------------------------------------------------------------------

class _Hide:
    """A sys.meta_path finder that makes the named top-level packages unfindable."""

    def __init__(self, *names: str):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def without_stripe(monkeypatch):
    """The `stripe` SDK made unfindable for the test, as on a bare `pip install flowrun`."""
    import sys

    for name in [m for m in sys.modules if m == "stripe" or m.startswith("stripe.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Hide("stripe"), *sys.meta_path])


def test_a_node_whose_sdk_is_missing_fails_validate_at_its_line_with_the_extra_to_install(
        without_stripe):
    found = one_problem("""
        actions:
          greet: {type: Compose, inputs: hi}
          customer:
            type: stripe.CreateCustomer
            connection: stripe
            inputs: {email: a@b.example}
        """)
    assert found == ("flows/x.yaml:4:3 actions.customer: stripe.CreateCustomer needs the Stripe "
                     "SDK: pip install 'flowrun[stripe]'")


def test_validate_never_imports_an_installed_sdk(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "stripe" or m.startswith("stripe.")]:
        monkeypatch.delitem(sys.modules, name)
    load_text(textwrap.dedent("""
        actions:
          customer: {type: stripe.GetCustomer, connection: stripe, inputs: {customer: cus_1}}
        """), "flows/x.yaml")
    assert "stripe" not in sys.modules


@pytest.mark.parametrize("trigger, expected", [
    # a Recurrence whose interval the schema lets through but the trigger's own check refuses
    ({"type": "Recurrence", "recurrence": {"frequency": "Minute", "interval": 1, "schedule": {"hours": [25]}}},
     "triggers.t.recurrence"),
    ({"type": "Recurrence", "recurrence": {"frequency": "Day", "interval": 1, "timeZone": "Mars/Olympus"}},
     "triggers.t.recurrence"),
])
def test_validate_reports_what_a_triggers_own_check_refuses_at_its_line_as_serve_would(trigger, expected):
    import yaml

    text = yaml.safe_dump({"triggers": {"t": trigger}, "actions": {"a": {"type": "Compose", "inputs": 1}}},
                          sort_keys=False)
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all(":" in p.split(" ", 1)[0] for p in found)  # file:line:column


def test_a_malformed_trigger_definition_is_a_schema_problem_never_a_crash_of_its_check():
    text = "triggers:\n  t: {type: Recurrence, recurrence: [1, 2]}\nactions:\n  a: {type: Compose, inputs: 1}\n"
    assert any("triggers.t.recurrence" in p for p in problems(text))


@pytest.mark.parametrize("name", [b"caf\xe9.yaml", b"\xff\xfe.yaml", b"ok\xed\xa0\x80.yaml"])
def test_a_flow_file_whose_path_is_not_utf8_is_one_problem_naming_it_not_a_crash_later(tmp_path, name):
    """No database row, log line or report can hold such a name: the run would fail on writing it."""
    import os

    from engine.loader import load_file

    path = os.path.join(os.fsencode(tmp_path), name)
    with open(path, "w") as out:
        out.write("actions:\n  a: {type: Compose, inputs: 1}\n")
    with pytest.raises(FlowError) as caught:
        load_file(os.fsdecode(path))
    [problem] = caught.value.problems
    assert "the file's path is not UTF-8 text" in str(problem)
    str(problem).encode("utf-8")  # printable anywhere


@pytest.mark.parametrize("where", ["/dev/zero", "/dev/urandom", "a fifo", "a folder", "too big"])
def test_a_flow_path_naming_no_regular_file_or_a_huge_one_is_refused_at_once_without_reading_it(tmp_path, where):
    """A child ``flow:`` comes from a template (a webhook's body may name it): ``/dev/zero``
    was read to the end, a worker's memory filled until the kernel killed it; a fifo blocked
    it for good. A flow is a regular file of at most MAX_FLOW_BYTES."""
    import os

    from engine import loader
    from engine.loader import load_file

    path = {"/dev/zero": "/dev/zero", "/dev/urandom": "/dev/urandom"}.get(where, str(tmp_path / "flow.yaml"))
    if where == "a fifo":
        os.mkfifo(path)
    elif where == "a folder":
        os.mkdir(path)
    elif where == "too big":
        with open(path, "w") as f:
            f.write("actions: {}\n" + "#" * (loader.MAX_FLOW_BYTES + 10))
    with pytest.raises(FlowError) as caught:
        load_file(path)
    message = str(caught.value)
    assert ("not a regular file" in message) if where != "too big" else ("larger than" in message), message
