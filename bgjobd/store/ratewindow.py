"""The arithmetic of rate limits that both backends share (see `bgjobs.rates`).

A claim counts the starts of its class (and limit key) later than `now - window`, with no
upper bound: a claimer whose `now` was read before another's (it waited for the lock) still
counts the other's start, so that no window of the rate's length ever holds more than its
starts, whatever order the claimers' clocks were read in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from bgjobd.store.base import RateUse
from bgjobs.rates import LONGEST_WINDOW, Rate

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


def forget_cutoffs(rates: Mapping[str, Rate], now: float) -> tuple[list[tuple[str, float]], float]:
    """(class, cutoff) for the classes of `rates`, and the cutoff of every other class: the
    starts at or before them no claim counts any more, whatever rate another node gives."""
    longest = Rate(1, LONGEST_WINDOW)
    return [(name, prune_before(rate, now)) for name, rate in rates.items()], prune_before(
        longest, now
    )


def use_of(
    class_name: str,
    rate: Rate,
    groups: Sequence[tuple[str, int, float]],
    held: int,
    starts_of: Callable[[str], Sequence[float]],
) -> RateUse:
    """A class's `RateUse` from its limit keys' (key, starts, oldest start) within the
    window. A key at its rate frees a start when its oldest start leaves the window; one
    over it (the rate was lowered) when enough have: `starts_of(key)` reads them."""
    slots = []
    for key, started, oldest in groups:
        if started == rate.starts:
            slots.append(oldest + rate.seconds)
        elif started > rate.starts and (slot := next_slot(rate, starts_of(key))) is not None:
            slots.append(slot)
    return RateUse(
        class_name=class_name,
        started=sum(started for _, started, _ in groups),
        keys=len(groups),
        full=sum(started >= rate.starts for _, started, _ in groups),
        held=held,
        next_slot=min(slots, default=None),
    )
