"""Sizes in the configuration: a number of bytes, or a string such as `"512MiB"`."""

from __future__ import annotations

import re
from typing import Final

_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)\s*\Z")
MAX_SIZE: Final = 1 << 62
"""Larger than any machine's memory or disk, and still a 64-bit integer."""


def parse_size(value: int | str) -> int:
    """Bytes from `1048576`, `"1048576"`, `"1MiB"`, `"1M"` (binary) or `"1MB"` (decimal).
    Raises ValueError with a reason."""
    if isinstance(value, bool):
        raise ValueError("expected a size, not a boolean")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(value)
        unit = _UNITS.get(match["unit"].lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"{value!r} is not a size (use bytes, or e.g. '512MiB', '2G')")
        number = int(float(match["number"]) * unit)
    if number < 0:
        raise ValueError("a size must not be negative")
    if number > MAX_SIZE:
        raise ValueError(f"{value!r} is too large")
    return number


def format_size(number: int) -> str:
    """`1048576` -> `1 MiB`; for messages."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if number >= factor:
            return f"{number / factor:.4g} {unit}"
    return f"{number} bytes"
