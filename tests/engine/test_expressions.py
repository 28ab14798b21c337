"""Templates: typing, workflow functions, never rendering data twice, and the sandbox."""
import json

import pytest

PAYLOAD = {"name": "Ada", "phone": "+15551234567", "zip": "00123", "total": 120.5, "paid": True,
           "tags": ["a", "b"], "customer": {"id": 7}, "nothing": None, "items": [1, 2, 3],
           "evil": "{{ 7*7 }}", "evil2": "{% for x in range(3) %}x{% endfor %}"}


def compose(run_flow, inputs, payload=PAYLOAD):
    result = run_flow(f"""
        actions:
          c:
            type: Compose
            inputs: {json.dumps(inputs)}
    """, input=payload)
    return result


@pytest.mark.parametrize("template, expected", [
    # a value that is exactly one {{ expr }} keeps its type
    ("{{ triggerBody() }}", PAYLOAD),
    ("{{ triggerBody().customer }}", {"id": 7}),
    ("{{ triggerBody().tags }}", ["a", "b"]),
    ("{{ triggerBody().total }}", 120.5),
    ("{{ triggerBody().paid }}", True),
    ("{{ triggerBody().nothing }}", None),
    ("  {{ triggerBody().customer.id }}  ", 7),
    ("{{ triggerBody().items }}", [1, 2, 3]),  # a JSON key, not dict.items
    # strings are never re-parsed
    ("{{ triggerBody().phone }}", "+15551234567"),
    ("{{ triggerBody().zip }}", "00123"),
    # text around it gives a string; objects render as JSON, null as ""
    ("to {{ triggerBody().phone }}", "to +15551234567"),
    ("{{ triggerBody().customer }}!", '{"id":7}!'),
    ("[{{ triggerBody().nothing }}]", "[]"),
    ("{{ triggerBody().paid }} / {{ triggerBody().total }}", "true / 120.5"),
    ("{{ triggerBody().name }}{{ triggerBody().zip }}", "Ada00123"),
    # filters
    ("{{ triggerBody().customer | json }}", '{"id":7}'),
    ("{{ '{\"a\": 1}' | fromjson }}", {"a": 1}),
    ("{{ 'hello' | b64encode }}", "aGVsbG8="),
    ("{{ 'aGVsbG8=' | b64decode }}", "hello"),
    ("{{ '2024-01-02T03:04:05Z' | dateformat('%Y/%m/%d') }}", "2024/01/02"),
    ("{{ coalesce(triggerBody().nothing, 'fallback') }}", "fallback"),
    ("{{ triggerBody().tags | length }}", 2),
    ("{{ workflow().name }}", "flow"),
])
def test_template_values(run_flow, template, expected):
    result = compose(run_flow, template)
    assert result.status == "Succeeded", result.error
    assert result.steps["c"].outputs == expected


def test_templates_inside_objects_and_lists(run_flow):
    result = compose(run_flow, {"to": "{{ triggerBody().phone }}", "n": "{{ triggerBody().customer.id }}",
                                "list": ["{{ triggerBody().zip }}", 1, None]})
    assert result.steps["c"].outputs == {"to": "+15551234567", "n": 7, "list": ["00123", 1, None]}


@pytest.mark.parametrize("field", ["evil", "evil2"])
def test_payload_data_is_never_rendered_as_a_template(run_flow, field):
    result = run_flow(f"""
        actions:
          first: {{type: Compose, inputs: "{{{{ triggerBody().{field} }}}}"}}
          second:
            type: Compose
            inputs: "got {{{{ body('first') }}}}"
            runAfter: {{first: [Succeeded]}}
          third:
            type: Compose
            inputs: "{{{{ outputs('second') }}}}"
            runAfter: {{second: [Succeeded]}}
    """, input=PAYLOAD)
    assert result.steps["first"].outputs == PAYLOAD[field]
    assert result.steps["second"].outputs == "got " + PAYLOAD[field]
    assert result.steps["third"].outputs == "got " + PAYLOAD[field]


@pytest.mark.parametrize("template, message", [
    ("{{ triggerBody().missing }}", "has no attribute 'missing'"),
    ("x {{ triggerBody().customer.missing }} y", "has no attribute 'missing'"),
    ("{{ triggerBody().nothing.deeper }}", "deeper"),
    ("{{ '{bad json' | fromjson }}", "JSONDecodeError"),
])
def test_undefined_fails_the_action_naming_the_expression(run_flow, template, message):
    result = compose(run_flow, template)
    step = result.steps["c"]
    assert step.status == "Failed"
    assert step.error["code"] == "ExpressionError"
    assert template.strip() in step.error["message"]
    assert message in step.error["message"]


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ triggerBody().__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ workflow.__globals__ }}",
    "{{ triggerBody().tags.append(1) }}",  # immutable sandbox: no mutation of data
    "{{ 'x' * 100000000 }}",
    "{{ 10 ** 100000 }}",
    "{{ range(10000000) | list | length }}",
    "{{ '%0100000000d' % 1 }}",
    "{{ 'x' | center(100000000) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ '%0100000000d' | format(1) }}",
])
def test_sandbox_blocks_escapes_and_resource_abuse(run_flow, template):
    result = compose(run_flow, template)
    step = result.steps["c"]
    assert step.status == "Failed", step.outputs
    assert step.error["code"] == "ExpressionError"


def test_resolved_inputs_are_what_is_persisted(run_flow):
    result = compose(run_flow, {"who": "{{ triggerBody().name }}"})
    assert result.steps["c"].inputs == {"who": "Ada"}
