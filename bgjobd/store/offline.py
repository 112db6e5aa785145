"""A store whose server cannot be reached for now (PostgreSQL restarting, its connections
terminated): the same call may work a moment later, once the store has reconnected.

Nothing here is lost for good: the store keeps the writes of its open transaction (other
than submits) and redoes them once connected again; what raised `StoreOffline` did not
happen. Callers treat it as SQLite's "busy": refuse a submit with `store_unavailable`,
keep an attempt's end and record it later, try a claim again at the next wake-up.
"""

from __future__ import annotations

from bgjobd.store.sqlite import is_busy


class StoreOffline(Exception):
    """The store's server cannot be reached now; the store reconnects with backoff."""


def is_transient(exc: BaseException) -> bool:
    """Whether a store error means "not now, later": SQLite's lock held past the wait, or a
    server out of reach."""
    return isinstance(exc, StoreOffline) or is_busy(exc)
