"""Durations in the configuration: seconds, or a string such as `"90s"`, `"12h"`, `"7d"`."""

from __future__ import annotations

import math
import re
from typing import Final

_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)\s*\Z")
MAX_DURATION: Final = 100 * 365 * 86400.0
"""A century: longer than any retention anyone means, and still a finite float."""


def parse_duration(value: int | float | str) -> float:
    """Seconds from `90`, `"90"`, `"90s"`, `"15m"`, `"12h"`, `"7d"` or `"2w"`.

    ValueError (saying what is accepted) for anything else, negative or over a century."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        unit = match["unit"].lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"{value!r} is not a duration (use seconds, or a number with s, m, h, d or w, "
                'e.g. "90s", "12h", "7d")'
            )
        seconds = float(match["number"]) * _UNITS[unit]
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is not a duration from 0 to 100 years")
    return seconds


def format_duration(seconds: float) -> str:
    """The largest whole unit: 604800 -> `7d`, 90 -> `90s`."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
