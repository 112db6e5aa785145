"""Chained jobs: each link runs after the one before it succeeds, and receives that link's
result as its first parameter. A link that fails for good, or is cancelled, cancels the
links after it; retrying that link brings them back.

The whole chain is stored at submit time (later links in state `waiting`), so a daemon
restart in the middle of a chain carries on where it was.
"""

from __future__ import annotations

from typing import Any, Final

from bgjobd.store.base import Store
from bgjobs.model import JobInfo, JobState

_REASON_PREFIX: Final = "chain link "


def cancel_reason(link: JobInfo) -> str:
    return (
        f"{_REASON_PREFIX}{link.chain_position} (job {link.id}, {link.label}) "
        f"ended {link.state.value}"
    )


def _later_links(store: Store, link: JobInfo) -> list[JobInfo]:
    if link.chain_id is None or link.chain_position is None:
        return []
    return [
        other
        for other in store.chain(link.chain_id)
        if other.chain_position and other.chain_position > link.chain_position
    ]


def release_next(store: Store, link: JobInfo, result: Any, now: float) -> JobInfo | None:
    """After `link` succeeded: queue the next link with the result as its first parameter."""
    later = _later_links(store, link)
    if not later:
        return None
    following = later[0]
    return store.release_link(following.id, [result, *following.params], now)


def cancel_rest(store: Store, link: JobInfo, now: float) -> list[int]:
    """After `link` failed for good or was cancelled: cancel every later waiting link."""
    later = [other.id for other in _later_links(store, link) if other.state is JobState.WAITING]
    return store.mark_cancelled(later, cancel_reason(link), now) if later else []


def revive_rest(store: Store, link: JobInfo) -> list[int]:
    """`link` is being retried: later links that its end cancelled wait again."""
    revived = [
        other.id
        for other in _later_links(store, link)
        if other.state is JobState.CANCELLED and (other.reason or "").startswith(_REASON_PREFIX)
    ]
    if revived:
        store.set_waiting(revived)
    return revived
