"""YAML → Python values, remembering where every value came from.

PyYAML keeps the last of two duplicate keys silently; here a duplicate is a Problem.
``load(text, file)`` returns ``(data, positions, problems)`` where ``positions`` maps a
dotted path (``actions.notify.inputs.to``) to its 1-based (line, column).
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import Problem

Positions = dict[str, tuple[int, int]]
MAX_VALUES = 1_000_000  # a flow file expanding past this is an alias bomb, not a flow


def dotted(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def load(text: str, file: str) -> tuple[Any, Positions, list[Problem]]:
    loader = yaml.SafeLoader(text)
    positions: Positions = {}
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, positions, [Problem(file, line, col, "", f"invalid YAML: {msg}")]
    except yaml.YAMLError as exc:
        return None, positions, [Problem(file, 1, 1, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return None, positions, []

    on_path: set[int] = set()
    budget = [MAX_VALUES]

    def walk(n: yaml.Node, path: str) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooBig(n)
        if id(n) in on_path:
            problems.append(Problem(file, n.start_mark.line + 1, n.start_mark.column + 1, path,
                                    "an alias refers to a value that contains it (recursive anchor)"))
            return None
        positions.setdefault(path, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            on_path.add(id(n))
            try:
                return _walk_collection(n, path)
            finally:
                on_path.discard(id(n))
        try:
            return loader.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            problems.append(Problem(file, n.start_mark.line + 1, n.start_mark.column + 1, path,
                                    f"invalid value: {exc}"))
            return None

    def _walk_collection(n: yaml.Node, path: str) -> Any:
        if isinstance(n, yaml.MappingNode):
            loader.flatten_mapping(n)
            out: dict = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    # keys stay as written: an action named `yes`, `on` or `404` is that text
                    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)
                sub = dotted(path, key)
                if key in out:
                    problems.append(Problem(file, key_node.start_mark.line + 1,
                                            key_node.start_mark.column + 1, sub,
                                            f"duplicate key '{key}' (first at line {positions[sub][0]})"))
                    continue
                # a scalar is pointed at where its value stands; a mapping or list at its key
                mark = value_node.start_mark if isinstance(value_node, yaml.ScalarNode) else key_node.start_mark
                positions[sub] = (mark.line + 1, mark.column + 1)
                positions["@" + sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = walk(value_node, sub)
            return out
        return [walk(v, dotted(path, i)) for i, v in enumerate(n.value)]

    try:
        data = walk(node, "")
    except _TooBig as big:
        mark = big.node.start_mark
        return None, positions, [Problem(file, mark.line + 1, mark.column + 1, "",
                                         f"the file expands to more than {MAX_VALUES:,} values "
                                         f"(aliases repeating aliases?)")]
    return data, positions, problems


class _TooBig(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def position(positions: Positions, path: str, *, key: bool = False) -> tuple[int, int]:
    """The position of ``path`` (of its key with ``key``), or of its nearest ancestor's."""
    if key and "@" + path in positions:
        return positions["@" + path]
    while path:
        if path in positions:
            return positions[path]
        path = path.rpartition(".")[0]
    return positions.get("", (1, 1))
