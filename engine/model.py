"""The validated flow: plain dataclasses the planner and executor read, nothing else.

A ``Flow`` has a root ``Block`` of ``Action``s; container actions (If, Switch, Foreach,
Until, Scope) own further blocks. Action names are unique across the whole flow, so
``body('charge')`` means the same action wherever it is written.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from .state import RUN_AFTER

STATUSES = RUN_AFTER  # the statuses a runAfter list may name

_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """ISO-8601 duration (PT30S, PT1H, P1D, PT0.05S) in seconds; ValueError if malformed."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"'{text}' is not an ISO-8601 duration such as PT30S")
    scale = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(float(v) * scale[k] for k, v in m.groupdict().items() if v)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying a retryable failure."""

    type: str = "exponential"  # none | fixed | exponential
    count: int = 4
    interval: float = 7.0
    minimum: float = 5.0
    maximum: float = 3600.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based), as in Logic Apps."""
        if retry_after is not None and retry_after == retry_after:  # NaN: no usable wait
            return min(max(retry_after, 0.0), self.maximum)
        if self.type == "fixed":
            return self.interval
        low = max(self.interval * 2 ** (retry - 2), self.minimum) if retry > 1 else min(self.minimum, self.interval)
        high = min(self.interval * 2 ** (retry - 1), self.maximum)
        return random.uniform(min(low, high), high)

    @classmethod
    def from_dict(cls, d: dict | None) -> "RetryPolicy":
        if not d:
            return cls()
        kind = str(d.get("type", "exponential")).lower()
        if kind == "none":
            return cls(type="none", count=0)
        if kind == "default":
            return cls()
        interval = parse_duration(d["interval"]) if "interval" in d else 7.0
        minimum = parse_duration(d["minimumInterval"]) if "minimumInterval" in d else min(5.0, interval)
        maximum = parse_duration(d["maximumInterval"]) if "maximumInterval" in d else 3600.0
        return cls(type=kind, count=int(d.get("count", 4)), interval=interval,
                   minimum=minimum, maximum=maximum)


@dataclass
class Block:
    """A set of sibling actions and the runAfter graph between them."""

    key: str  # "" for the root, else e.g. "actions", "else", "case:gold", "default"
    actions: dict[str, "Action"]
    owner: "Action | None" = None
    starts: list[str] = field(default_factory=list)  # actions with no runAfter
    dependents: dict[str, list[str]] = field(default_factory=dict)  # the runAfter graph: who waits for whom
    leaves: list[str] = field(default_factory=list)  # actions nothing runs after
    chain: list[str] | None = None  # the actions in order when each waits only for the one before
    run_after: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Action:
    name: str
    type: str  # canonical node type name
    node: Any  # the Node class
    raw: dict  # the action as written (after type canonicalisation)
    inputs: Any
    run_after: dict[str, tuple[str, ...]]
    retry: RetryPolicy
    timeout: float | None
    connection: str | None
    where: str  # dotted path in the file: actions.try.actions.charge
    parent: "Action | None" = None
    blocks: dict[str, Block] = field(default_factory=dict)
    block: "Block | None" = field(default=None, repr=False)  # the block it belongs to

    def ancestors(self) -> list["Action"]:
        out, a = [], self.parent
        while a is not None:
            out.append(a)
            a = a.parent
        return out


@dataclass
class Parameter:
    name: str
    type: str
    default: Any = None
    has_default: bool = False
    allowed: list | None = None
    description: str = ""


@dataclass
class Trigger:
    name: str
    type: str
    raw: dict


@dataclass
class Flow:
    name: str
    description: str
    parameters: dict[str, Parameter]
    triggers: dict[str, Trigger]
    root: Block
    outputs: dict[str, Any]
    actions: dict[str, Action]  # every action, nested ones included, by name
    file: str
    source: str
    hash: str
    raw: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)  # Problems that do not stop the flow (Node.warnings)
    app_settings: dict = field(default_factory=dict)  # appsetting(): a Standard app's settings (else the env)
    callback_url: str | None = None  # listCallbackUrl(): the Request trigger's URL, when served

    def connections_used(self) -> set[str]:
        names = {a.connection for a in self.actions.values() if a.connection}
        for a in self.actions.values():
            if getattr(a.node, "more_connections", None):
                names.update(a.node.more_connection_names(a.raw))
        return names

    @property
    def replies(self) -> bool:
        """An action of the flow replies to the request that started the run (Response)."""
        return any(getattr(a.node, "replies", False) for a in self.actions.values())

    @property
    def concurrency(self) -> Any:
        """The flow's ``concurrency`` (engine.concurrency.Concurrency), or None: no limit."""
        from .concurrency import Concurrency

        return Concurrency.of(self.raw.get("concurrency"))
