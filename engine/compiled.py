"""Compiled JSON Schemas: a fast yes/no for the common case (valid), every error in detail
only when the answer is no.

The yes/no comes from ``jsonschema_rs`` (a compiled Draft 2020-12 validator, ~1 us for an
action) when it is installed; the detail from ``jsonschema`` (imported on first failure), whose
``ValidationError``s the loader and the executor turn into flowrun's words. Without
``jsonschema_rs`` everything goes through ``jsonschema``: the same answers, slower.
"""
from __future__ import annotations

from typing import Any


class Compiled:
    """One schema: a fast yes/no check, and every error in detail only when it says no."""

    def __init__(self, schema: dict):
        self.schema = schema
        self._fast: Any = None  # compiled on first use: a load from the cache needs none
        self._full: Any = None
        self._compiled = False

    def _compile(self) -> None:
        self._compiled = True
        try:
            import jsonschema_rs
        except ImportError:  # optional speed-up: jsonschema alone gives the same answers
            return
        try:
            self._fast = jsonschema_rs.validator_for(self.schema).is_valid
        except Exception:  # noqa: BLE001  a schema it cannot compile: jsonschema decides
            self._fast = None

    def errors(self, instance: Any) -> list:
        if not self._compiled:
            self._compile()
        if self._fast is not None:
            try:
                if self._fast(instance):
                    return []
            except Exception:  # noqa: BLE001  a value it cannot take (a huge int): jsonschema decides
                pass
        if self._full is None:
            from jsonschema import Draft202012Validator

            self._full = Draft202012Validator(self.schema)
        try:
            return list(self._full.iter_errors(instance))
        except RecursionError:
            return [_Message("nested too deeply to check")]


def schema_problem(schema: Any) -> Any:
    """None when ``schema`` is a valid Draft 2020-12 schema, else jsonschema's SchemaError
    (with its message and path). ``jsonschema_rs`` answers the common yes; jsonschema explains."""
    try:
        import jsonschema_rs

        if jsonschema_rs.meta.is_valid(schema):
            return None
    except Exception:  # noqa: BLE001  not installed, or a value it cannot take: jsonschema decides
        pass
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc
    return None


class _Message:
    """A schema error that is only a message (shaped like jsonschema's ValidationError)."""

    validator, context, absolute_path, schema = "", (), (), {}

    def __init__(self, message: str):
        self.message = message
