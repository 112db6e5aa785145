"""Rate limits in the configuration: `rate_limit = "N/s"` (or `/m`, `/h`) on a job class.

A rate is counted by the store over a sliding window: at most `starts` attempts of a class
(or of one `limit_by` value of it) start within any `seconds`-long stretch of time, across
every process sharing the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_PER: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
LONGEST_WINDOW: Final = max(_PER.values())
"""Seconds of the longest window a rate may have (`/h`)."""
_RATE = re.compile(r"\s*(?P<starts>\d+)\s*/\s*(?P<per>[smh])\s*\Z")


@dataclass(frozen=True)
class Rate:
    starts: int
    """At most this many starts..."""
    seconds: float
    """...within any window this long."""

    def __str__(self) -> str:
        per = next(unit for unit, seconds in _PER.items() if seconds == self.seconds)
        return f"{self.starts}/{per}"


def parse_rate(text: str) -> Rate:
    """`"5/s"`, `"100/m"`, `"1000/h"`; ValueError (saying what is accepted) otherwise."""
    match = _RATE.match(text)
    if match is None or int(match["starts"]) < 1:
        raise ValueError(
            f"{text!r} is not a rate (use a positive whole number of starts per s, m or h, "
            'e.g. "5/s", "100/m", "1000/h")'
        )
    return Rate(int(match["starts"]), _PER[match["per"]])
