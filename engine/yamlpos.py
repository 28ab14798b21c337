"""YAML → Python values, remembering where every value came from.

libyaml parses (``yaml.CSafeLoader``: about ten times faster than the pure-Python parser) and
this module builds the values from its node tree, so every value keeps its position and
nothing is left to PyYAML's constructor that could raise on a hostile file:

- a duplicate key is a Problem (PyYAML silently keeps the last one);
- a control character, a malformed scalar (``!!timestamp hello``, an int of 5,000 digits),
  a tag a flow file has no use for (``!!binary``, ``!!python/...``), nesting deeper than
  ``MAX_DEPTH`` and an alias bomb are Problems, never exceptions;
- values are JSON-like: a date or time stays the text that was written.

``load(text, file)`` returns ``(data, positions, problems)`` where ``positions`` maps a
dotted path (``actions.notify.inputs.to``) to its 1-based (line, column), and ``"@" + path``
to where its key stands.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import Problem

if TYPE_CHECKING:
    import yaml

Positions = dict[str, tuple[int, int]]
MAX_VALUES = 1_000_000  # a flow file expanding past this is an alias bomb, not a flow
MAX_DEPTH = 64  # mappings and lists inside each other; a real flow stays far below

_STR, _NULL, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT, _TIMESTAMP = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"
_SCALARS = frozenset({_NULL, _BOOL, _INT, _FLOAT})
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_COLLECTIONS = frozenset({_MAP, _SEQ, "tag:yaml.org,2002:omap", "tag:yaml.org,2002:set"})
_TIMESTAMP_TEXT = re.compile(r"^\d{4}-\d\d?-\d\d?(?:(?:[Tt]|[ \t]+)\d\d?:\d\d:\d\d(?:\.\d*)?"
                             r"(?:[ \t]*(?:Z|[-+]\d\d?(?::\d\d)?))?)?$")


@lru_cache(maxsize=1)
def _yaml() -> tuple[Any, type]:
    """PyYAML and the loader class, imported on first parse (a flow loaded from the state
    database's cache is never parsed: a plain ``flowrun run`` does not import yaml)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
    first = frozenset(k for k in base.yaml_implicit_resolvers if k)  # may start a non-str scalar

    class Loader(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            """PyYAML's resolver, with the common cases first: a quoted scalar, or a plain one
            whose first character starts no implicit type (null, bool, int, float, timestamp,
            merge), is a str (libyaml calls this once per scalar: it was a third of the parse)."""
            if kind is yaml.ScalarNode:
                if not implicit[0] or (value and value[0] not in first):
                    return _STR
            elif kind is yaml.MappingNode:
                return _MAP
            elif kind is yaml.SequenceNode:
                return _SEQ
            return super().resolve(kind, value, implicit)

    return yaml, Loader


# YAML's printable set (YAML 1.1 §5.1 as libyaml applies it), tab and line breaks included
_UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def dotted(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _at(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def load(text: str, file: str) -> tuple[Any, Positions, list[Problem]]:
    positions: Positions = {}
    bad = _UNPRINTABLE.search(text)
    if bad:
        line, col = _at(text, bad.start())
        return None, positions, [Problem(file, line, col, "", f"control character U+{ord(bad.group()):04X} "
                                                              f"is not allowed in a flow file")]
    yaml, loader_class = _yaml()
    try:
        loader = loader_class(text)
    except yaml.YAMLError as exc:
        return None, positions, [Problem(file, 1, 1, "", f"invalid YAML: {exc}")]
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, positions, [Problem(file, line, col, "", f"invalid YAML: {msg}")]
    except (yaml.YAMLError, ValueError, RecursionError, MemoryError) as exc:
        return None, positions, [Problem(file, 1, 1, "", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return None, positions, []
    builder = _Builder(yaml, loader, file, positions)
    try:
        data = builder.value(node, "", 0)
    except _TooBig as big:
        mark = big.node.start_mark
        return None, positions, [Problem(file, mark.line + 1, mark.column + 1, "",
                                         f"the file expands to more than {MAX_VALUES:,} values "
                                         f"(aliases repeating aliases?)")]
    except _TooDeep as deep:
        mark = deep.node.start_mark
        return None, positions, [Problem(file, mark.line + 1, mark.column + 1, "",
                                         f"values are nested deeper than {MAX_DEPTH} levels")]
    return data, positions, builder.problems


class _TooDeep(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _TooBig(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _Builder:
    """Builds plain values from libyaml's nodes, recording positions and problems."""

    def __init__(self, yaml: Any, loader: Any, file: str, positions: Positions):
        self.y, self.loader, self.file, self.positions = yaml, loader, file, positions
        self.problems: list[Problem] = []
        self.on_path: set[int] = set()
        self.budget = MAX_VALUES

    def problem(self, n: yaml.Node, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, n.start_mark.line + 1, n.start_mark.column + 1, path, message))

    def value(self, n: yaml.Node, path: str, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooBig(n)
        if path not in self.positions:
            self.positions[path] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, self.y.ScalarNode):
            return self.scalar(n, path)
        if id(n) in self.on_path:
            self.problem(n, path, "an alias refers to a value that contains it (recursive anchor)")
            return None
        if depth >= MAX_DEPTH:
            raise _TooDeep(n)
        if n.tag not in _COLLECTIONS:
            self.problem(n, path, f"the tag {_tag(n.tag)} is not supported in a flow file")
            return None
        self.on_path.add(id(n))
        try:
            if isinstance(n, self.y.MappingNode):
                return self.mapping(n, path, depth + 1)
            return [self.value(v, dotted(path, i), depth + 1) for i, v in enumerate(n.value)]
        finally:
            self.on_path.discard(id(n))

    def scalar(self, n: yaml.ScalarNode, path: str) -> Any:
        tag = n.tag
        if tag == _STR:
            return n.value
        if tag == _TIMESTAMP:
            if _TIMESTAMP_TEXT.match(n.value):
                return n.value  # JSON has no dates: the text as written
            self.problem(n, path, f"invalid value: {n.value!r} is not a timestamp")
            return None
        if tag not in _SCALARS:
            self.problem(n, path, f"the tag {_tag(tag)} is not supported in a flow file "
                                  f"(values are strings, numbers, booleans, null, lists and mappings)")
            return None
        try:
            return self.loader.construct_object(n)
        except Exception as exc:  # noqa: BLE001  a malformed scalar of a known tag, whatever PyYAML raises
            why = "too many digits" if len(n.value) > 4000 else f"not a valid {_tag(tag)[2:]}"
            self.problem(n, path, f"invalid value {n.value[:40]!r}: {why}")
            return None

    def key(self, n: yaml.Node) -> str:
        """Keys stay as written: an action named ``yes``, ``on`` or ``404`` is that text."""
        if isinstance(n, self.y.ScalarNode):
            return n.value
        self.problem(n, "", "a key must be a plain value, not a list or mapping")
        return f"<{type(n).__name__} at line {n.start_mark.line + 1}>"

    def mapping(self, n: yaml.MappingNode, path: str, depth: int) -> dict:
        try:
            self.loader.flatten_mapping(n)  # merge keys (<<: *defaults)
        except (self.y.YAMLError, RecursionError) as exc:
            self.problem(n, path, f"invalid merge: {getattr(exc, 'problem', None) or exc}")
        out: dict = {}
        positions = self.positions
        for key_node, value_node in n.value:
            key = self.key(key_node)
            sub = f"{path}.{key}" if path else key
            if key in out:
                self.problem(key_node, sub, f"duplicate key '{key}' (first at line {positions[sub][0]})")
                continue
            # a scalar is pointed at where its value stands; a mapping or list at its key
            km = key_node.start_mark
            mark = value_node.start_mark if isinstance(value_node, self.y.ScalarNode) else km
            positions[sub] = (mark.line + 1, mark.column + 1)
            positions["@" + sub] = (km.line + 1, km.column + 1)
            out[key] = self.value(value_node, sub, depth)
        return out


def position(positions: Positions, path: str, *, key: bool = False) -> tuple[int, int]:
    """The position of ``path`` (of its key with ``key``), or of its nearest ancestor's."""
    if key and "@" + path in positions:
        return positions["@" + path]
    while path:
        if path in positions:
            return positions[path]
        path = path.rpartition(".")[0]
    return positions.get("", (1, 1))


def inside(source: str, at: tuple[int, int], value: str, offset: int) -> tuple[int, int]:
    """The position of character ``offset`` of the string ``value`` written at ``at`` in
    ``source``: exact when the scalar is written on one line without escapes before that
    character (plain or quoted), else ``at`` itself."""
    line, col = at
    lines = source.split("\n")
    if not 0 < line <= len(lines) or offset < 0:
        return at
    text = lines[line - 1]
    start = col - 1
    if start < len(text) and text[start] in "'\"" and not value.startswith(text[start]):
        start += 1
    if text[start:start + offset] == value[:offset]:
        return line, start + offset + 1
    return at
