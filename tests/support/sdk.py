"""Introspection of an SDK's exception classes, for the error-table completeness tests."""
from __future__ import annotations


def exception_classes(*roots: type[BaseException]) -> list[type[BaseException]]:
    """Every class below ``roots`` (roots excluded), as the SDK defines them, sorted by name."""
    seen: set[type] = set()
    stack = list(roots)
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return sorted(seen - set(roots), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def unmapped(vendor, classes) -> list[str]:
    """The classes the vendor's table maps to nothing, or only to its generic fallback."""
    out = []
    for cls in classes:
        rule = vendor.table.rule_for(cls)
        if rule is None or rule.fallback:
            out.append(f"{cls.__module__}.{cls.__qualname__}")
    return out
