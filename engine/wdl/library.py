"""The function library's declarations: each function declared once.

``@define("substring(text, startIndex, length?)", "description", "string")`` registers the
function below it under its name (matched case-insensitively). The signature is the one
truth for the arity (``?`` marks optional parameters, ``...`` a repeated last one), for
``flowrun functions``, for the static checks at validate and for the docs. The same
declarations are the Jinja globals of the same names (engine.expressions).

An implementation takes the evaluated arguments; ``lazy`` ones take argument thunks (and,
or, if, coalesce short-circuit); ``scope`` ones take the scope's workflow functions first.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

CATEGORIES = ("string", "collection", "logical", "conversion", "math", "date", "workflow", "uri", "manipulation")


@dataclass(frozen=True)
class Fn:
    name: str
    category: str
    signature: str
    description: str
    min: int
    max: int | None            # None: any number
    impl: Callable[..., Any]
    lazy: bool = False
    scope: bool = False        # impl(names, *args): reads the run through the scope's functions
    workflow: bool = False     # the scope's own function of this name answers

    def arity_problem(self, n: int) -> str | None:
        if n < self.min or (self.max is not None and n > self.max):
            if self.max is None:
                want = f"at least {self.min} parameter{'s' * (self.min != 1)}"
            elif self.min == self.max:
                want = f"{self.min} parameter{'s' * (self.min != 1)}" if self.min else "no parameters"
            else:
                want = f"{self.min} to {self.max} parameters"
            return (f"The template language function '{self.name}' expects {want}: {self.signature}; "
                    f"it was given {n}.")
        return None


LIBRARY: dict[str, Fn] = {}  # lower-case name -> declaration

_PARAMS = re.compile(r"^(\w+)\((.*)\)$")


def define(signature: str, description: str, category: str, *, lazy: bool = False, scope: bool = False,
           aliases: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    m = _PARAMS.match(signature)
    assert m and category in CATEGORIES, signature
    name = m[1]
    params = [p.strip() for p in m[2].split(",") if p.strip()]
    required = sum(1 for p in params if not p.endswith("?") and p != "...")
    most = None if "..." in params else len(params)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for n in (name, *aliases):
            assert n.lower() not in LIBRARY, n
            sig = signature if n == name else signature.replace(name + "(", n + "(", 1)
            desc = description if n == name else f"= {name}(): {description}"
            LIBRARY[n.lower()] = Fn(n, category, sig, desc, required, most, fn, lazy, scope)
        return fn
    return register


def workflow(signature: str, description: str) -> None:
    """A workflow function: the scope (engine.frames.Frame) answers it."""
    m = _PARAMS.match(signature)
    assert m, signature
    params = [p.strip() for p in m[2].split(",") if p.strip()]
    required = sum(1 for p in params if not p.endswith("?"))
    LIBRARY[m[1].lower()] = Fn(m[1], "workflow", signature, description, required, len(params),
                               _unbound(m[1]), workflow=True)


def _unbound(name: str) -> Callable[..., Any]:
    def call(*_: Any) -> Any:
        raise RuntimeError(name)  # never called: the evaluator calls the scope's function
    return call


def lookup(name: str) -> Fn | None:
    return LIBRARY.get(name.lower())


def load() -> dict[str, Fn]:
    """Every declaration (the category modules register on import)."""
    from . import conversion, dates, documents, functions, numbers  # noqa: F401
    return LIBRARY
