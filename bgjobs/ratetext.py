"""A rate-limited class's figures (`RateStats`) in words, as `bgjobctl stats` and the
dashboard both show them."""

from __future__ import annotations

from datetime import datetime

from bgjobs.model import RateStats


def rate_text(rate: RateStats) -> str:
    """`5/s`, or `10/m per params[0]` with `limit_by`."""
    return rate.rate if rate.limit_by is None else f"{rate.rate} per params[{rate.limit_by}]"


def started_text(rate: RateStats) -> str:
    """The starts within the window now: `3`, or `23 (4 values)` with `limit_by`."""
    if rate.limit_by is None:
        return str(rate.started)
    return f"{rate.started} ({rate.keys} value{'s' * (rate.keys != 1)})"


def next_text(rate: RateStats, now: datetime) -> str:
    """When the first full window frees a start, from `now`: `in 0.4s`, `in 3m 05s`; `-`
    when no window is full."""
    if rate.next_slot is None:
        return "-"
    seconds = max((rate.next_slot - now).total_seconds(), 0.0)
    if seconds < 60:
        return f"in {seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"in {minutes}m {rest:02d}s"
    return f"in {minutes // 60}h {minutes % 60:02d}m"
