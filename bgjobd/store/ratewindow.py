"""The arithmetic of rate limits that both backends share (see `bgjobs.rates`).

A claim counts the starts of its class (and limit key) later than `now - window`, with no
upper bound: a claimer whose `now` was read before another's (it waited for the lock) still
counts the other's start, so that no window of the rate's length ever holds more than its
starts, whatever order the claimers' clocks were read in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bgjobs.rates import Rate

KEEP_EXTRA_SECONDS: Final = 60.0
"""Starts are deleted only this long after they left their window: a claimer with an older
`now` (it waited for the store's lock) must still find the starts it would count."""


def window_start(rate: Rate, now: float) -> float:
    """Starts later than this count against a claim at `now`."""
    return now - rate.seconds


def prune_before(rate: Rate, now: float) -> float:
    """Starts at or before this no claim counts any more."""
    return now - rate.seconds - KEEP_EXTRA_SECONDS


def next_slot(rate: Rate, started: Sequence[float]) -> float | None:
    """When a group whose counted starts are `started` (ascending) may start again: once
    the start that leaves its window brings the count under the rate. None if it may now."""
    over = len(started) - rate.starts
    if over < 0:
        return None
    return started[over] + rate.seconds
