"""The run page's Gantt chart: one bar per step, from its start to its end, on the run's time axis."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from engine.runs import Step

WIDTH, ROW, LABEL = 900, 18, 230  # chart width, row height, label column (SVG units)
MOST = 300  # rows drawn; the page says how many more there were


@dataclass
class Bar:
    label: str
    path: str
    status: str
    x: float
    width: float
    y: int
    ms: float | None


@dataclass
class Chart:
    bars: list[Bar]
    width: int
    height: int
    span_ms: float
    more: int
    ticks: list[tuple[float, str]]


def chart(steps: Iterable[Step], start: float | None, end: float | None) -> Chart:
    rows = [s for s in steps if s.started is not None]
    rows.sort(key=lambda s: (s.started, s.seq or 0))
    more = max(0, len(rows) - MOST)
    rows = rows[:MOST]
    t0 = start if start is not None else min((s.started for s in rows), default=0.0)
    t1 = max([end or 0.0] + [s.ended or s.started for s in rows]) if rows or end else t0
    span = max(t1 - t0, 1e-6)
    scale = (WIDTH - LABEL - 10) / span
    bars = []
    for i, s in enumerate(rows):
        x = LABEL + max(0.0, (s.started - t0) * scale)
        stop = s.ended if s.ended is not None else t1
        width = max(2.0, (stop - s.started) * scale)
        label = s.path if len(s.path) <= 34 else "…" + s.path[-33:]
        bars.append(Bar(label, s.path, str(s.status), round(x, 1), round(width, 1), i * ROW,
                        None if s.duration is None else round(s.duration * 1000, 1)))
    ticks = [(round(LABEL + k * (WIDTH - LABEL - 10) / 4, 1), f"{span * k / 4 * 1000:.0f} ms") for k in range(5)]
    return Chart(bars, WIDTH, len(bars) * ROW + 22, round(span * 1000, 1), more, ticks)
