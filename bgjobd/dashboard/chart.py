"""The throughput chart's geometry: stacked bars per minute, computed once here and drawn as
inline SVG by both the template and the page's script (no chart library, no CDN).

The plot is one SVG in minute-by-pixel units stretched to any width (bars and non-scaling
grid lines stretch well; text would not), so its axis labels live outside it.
"""

from __future__ import annotations

import time
from typing import Any, Final

MINUTES: Final = 60
HEIGHT: Final = 130
"""Pixels; the plot's width follows the page."""
HEADROOM: Final = 6
STACK: Final = ("succeeded", "failed", "cancelled")
"""Bottom to top."""


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value`."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _describe(point: dict[str, Any]) -> str:
    minute = time.strftime("%H:%M", time.gmtime(point["minute"]))
    counts = ", ".join(f"{point[state]} {state}" for state in STACK if point[state])
    return f"{minute} UTC: {counts or 'nothing finished'}"


def bars(series: list[dict[str, Any]]) -> dict[str, Any]:
    usable = HEIGHT - HEADROOM
    peak = max((sum(point[state] for state in STACK) for point in series), default=0)
    top = nice_ceiling(max(peak, 1))
    rects = []
    for index, point in enumerate(series):
        y = float(HEIGHT)
        for state in STACK:
            if not point[state]:
                continue
            height = point[state] / top * usable
            y -= height
            rects.append(
                {
                    "x": index + 0.15,
                    "y": round(y, 2),
                    "w": 0.7,
                    "h": round(height, 2),
                    "cls": f"bar-{state}",
                }
            )
    marks = sorted({0, top} | ({top // 2} if top % 2 == 0 else set()))
    return {
        "minutes": len(series),
        "height": HEIGHT,
        "grid": [
            {"y": round(HEIGHT - mark / top * usable, 2), "label": str(mark)} for mark in marks
        ],
        "slots": [{"x": index, "title": _describe(point)} for index, point in enumerate(series)],
        "rects": rects,
        "xlabels": [f"{len(series)} min ago", f"{len(series) // 2} min ago", "now"],
        "peak": peak,
        "empty": peak == 0,
    }
