"""A flow's actions and runAfter edges as Mermaid or Graphviz DOT text."""
from __future__ import annotations

from .model import Block, Flow


def render(flow: Flow, fmt: str = "mermaid") -> str:
    lines: list[str] = []
    dot = fmt == "dot"
    lines.append(f'digraph "{flow.name}" {{' if dot else "flowchart TD")

    def ident(name: str) -> str:
        return name.replace("-", "_")

    def block(b: Block, indent: str) -> None:
        for name, a in b.actions.items():
            label = f"{name}\\n{a.type}" if dot else f"{name}<br/><small>{a.type}</small>"
            if a.blocks:
                if dot:
                    lines.append(f'{indent}subgraph "cluster_{name}" {{ label="{name} ({a.type})";')
                else:
                    lines.append(f'{indent}subgraph {ident(name)}_group["{name} ({a.type})"]')
                lines.append(f'{indent}  {ident(name)}["{label}"]' if not dot else f'{indent}  {ident(name)} [label="{label}"];')
                for key, sub in a.blocks.items():
                    block(sub, indent + "  ")
                    for start in sub.starts:
                        lines.append(f'{indent}  {ident(name)} -> {ident(start)} [style=dashed, label="{key}"];' if dot
                                     else f'{indent}  {ident(name)} -. {key} .-> {ident(start)}')
                lines.append(f"{indent}}}" if dot else f"{indent}end")
            else:
                lines.append(f'{indent}{ident(name)} [label="{label}"];' if dot else f'{indent}{ident(name)}["{label}"]')
            for pred, statuses in a.run_after.items():
                tag = "" if list(statuses) == ["Succeeded"] else "|".join(statuses)
                if dot:
                    lines.append(f'{indent}{ident(pred)} -> {ident(name)}' + (f' [label="{tag}"]' if tag else "") + ";")
                else:
                    lines.append(f"{indent}{ident(pred)} -->" + (f"|{tag}|" if tag else "") + f" {ident(name)}")

    block(flow.root, "  ")
    if dot:
        lines.append("}")
    return "\n".join(lines) + "\n"
