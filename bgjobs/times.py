"""The range every time a job is given must fall in, checked wherever one enters.

A delay (a submit's, a backoff's, a job's `Retry(delay=)`) is a finite number of seconds
from 0 to `MAX_DELAY` (ten years); a due time (`at`) lies between 1970-01-01 and the end of
9999 UTC. Anything else (NaN, infinity, 1e308) is refused where it enters, so the scheduler
only ever sees times it can order and a clock can reach.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

MAX_DELAY: Final = 10 * 365 * 24 * 3600.0
"""Ten years, in seconds: the longest delay, backoff or retry delay."""
LATEST_RUN_AT: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""The latest due time, as a Unix timestamp (the last second of 9999 UTC)."""
EARLIEST_RUN_AT: Final = 0.0
"""The earliest due time: 1970-01-01 UTC."""


def delay_problem(value: object) -> str | None:
    """Why `value` is not an acceptable delay in seconds, or None when it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds, not {type(value).__name__}"
    # Written so that NaN (every comparison false) fails it too; ints are compared
    # exactly, so 10**400 cannot overflow on the way.
    if not 0 <= value <= MAX_DELAY:
        return f"must be from 0 to {MAX_DELAY:.0f} seconds (10 years), not {_shown(value)}"
    return None


def _shown(value: int | float) -> str:
    # repr() of a huge int is long, and past 4300 digits it raises.
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def run_at_problem(moment: datetime) -> str | None:
    """Why `moment` is not an acceptable due time, or None when it is."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "must carry a timezone"
    if not EARLIEST_RUN_AT <= moment.timestamp() <= LATEST_RUN_AT:
        return f"must lie between 1970-01-01 and 9999-12-31 UTC, not {moment.isoformat()}"
    return None


def due_time_is_sane(timestamp: float | None) -> bool:
    """Whether a stored due time is one the scheduler can order and reach (SQLite stores
    a NaN as NULL, hence None)."""
    return isinstance(timestamp, float | int) and EARLIEST_RUN_AT <= timestamp <= LATEST_RUN_AT


def clamp_due_time(timestamp: float | None) -> float:
    """The nearest sane due time; NaN (or None) becomes the earliest: due at once."""
    if not isinstance(timestamp, float | int) or math.isnan(timestamp):
        return EARLIEST_RUN_AT
    return float(min(max(timestamp, EARLIEST_RUN_AT), LATEST_RUN_AT))
