"""A flow's actions and runAfter edges as Mermaid or Graphviz DOT text.

Every id and label is quoted and escaped for its language, so any action name (``end``,
``call``, ``graph``, names with ``-``) and any label (``Failed|TimedOut``, quotes, ``<``,
``#``) gives text that Mermaid's and Graphviz's own parsers accept (tests/engine/test_graph.py
runs both on it).
"""
from __future__ import annotations

from .model import Block, Flow

_MERMAID_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;",
                     "\n": " ", "\r": " ", "|": "#124;", "`": "#96;"}


def mermaid_id(name: str) -> str:
    """A Mermaid node id no keyword (``end``, ``call``, ``click``) or arrow can clash with: ``n_``
    and the name with ``_`` doubled and ``-`` as ``_h`` (one name, one id, both ways)."""
    return "n_" + "".join("__" if c == "_" else "_h" if c == "-" else c if c.isascii() and c.isalnum()
                          else f"_x{ord(c):x}_" for c in name)


def mermaid_text(text: str) -> str:
    """Text for inside a Mermaid "quoted" label, entity-coded where Mermaid reads markup."""
    return "".join(_MERMAID_ENTITIES.get(c, c) for c in str(text))


def dot_text(text: str) -> str:
    """A DOT double-quoted string's content: backslashes and quotes escaped, newlines as ``\\n``."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")


def render(flow: Flow, fmt: str = "mermaid") -> str:
    return _dot(flow) if fmt == "dot" else _mermaid(flow)


def _tag(statuses: tuple[str, ...]) -> str:
    return "" if list(statuses) == ["Succeeded"] else "|".join(statuses)


def _mermaid(flow: Flow) -> str:
    lines = ["flowchart TD"]

    def block(b: Block, indent: str) -> None:
        for name, a in b.actions.items():
            nid = mermaid_id(name)
            label = f'"{mermaid_text(name)}<br/><small>{mermaid_text(a.type)}</small>"'
            if a.blocks:
                lines.append(f'{indent}subgraph {nid}__group["{mermaid_text(f"{name} ({a.type})")}"]')
                lines.append(f"{indent}  {nid}[{label}]")
                for key, sub in a.blocks.items():
                    block(sub, indent + "  ")
                    for start in sub.starts:
                        lines.append(f'{indent}  {nid} -.->|"{mermaid_text(key)}"| {mermaid_id(start)}')
                lines.append(f"{indent}end")
            else:
                lines.append(f"{indent}{nid}[{label}]")
            for pred, statuses in a.run_after.items():
                tag = _tag(statuses)
                lines.append(f"{indent}{mermaid_id(pred)} -->" + (f'|"{mermaid_text(tag)}"|' if tag else "")
                             + f" {nid}")

    block(flow.root, "  ")
    return "\n".join(lines) + "\n"


def _dot(flow: Flow) -> str:
    lines = [f'digraph "{dot_text(flow.name)}" {{']

    def q(text: str) -> str:
        return f'"{dot_text(text)}"'

    def block(b: Block, indent: str) -> None:
        for name, a in b.actions.items():
            label = q(f"{name}\n{a.type}")
            if a.blocks:
                lines.append(f"{indent}subgraph {q('cluster_' + name)} {{ label={q(f'{name} ({a.type})')};")
                lines.append(f"{indent}  {q(name)} [label={label}];")
                for key, sub in a.blocks.items():
                    block(sub, indent + "  ")
                    for start in sub.starts:
                        lines.append(f"{indent}  {q(name)} -> {q(start)} [style=dashed, label={q(key)}];")
                lines.append(f"{indent}}}")
            else:
                lines.append(f"{indent}{q(name)} [label={label}];")
            for pred, statuses in a.run_after.items():
                tag = _tag(statuses)
                lines.append(f"{indent}{q(pred)} -> {q(name)}" + (f" [label={q(tag)}]" if tag else "") + ";")

    block(flow.root, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"
