"""The `@` expression language of Logic Apps' Workflow Definition Language (WDL).

- ``parser``: fields and expressions → AST with offsets (``split``, ``parse``, ``is_wdl``);
- ``library``: the declaration of every function (name, arity from the signature, category,
  description, implementation), filled by ``functions``, ``conversion``, ``numbers``,
  ``dates`` and ``documents``;
- ``values``: WDL typing, text, equality, property access and InvalidTemplate errors;
- ``evaluate``: a field compiled to closures, run against a scope's workflow functions.

engine.expressions.Evaluator is the one caller: it decides which language a field is in.
"""
from .evaluate import CompileError, Program, compile_field, suggest_function
from .library import LIBRARY, Fn, load, lookup
from .parser import WdlSyntaxError, is_wdl

__all__ = ["CompileError", "Fn", "LIBRARY", "Program", "WdlSyntaxError", "compile_field", "is_wdl", "load",
           "lookup", "suggest_function"]
