"""A store that cannot do what is asked just now, but may a moment later: its server out of
reach (PostgreSQL restarting, its connections terminated), or the transaction undone by
the server to break a deadlock with another node.

Nothing here is lost for good: the store keeps the writes of its open transaction (other
than submits) and redoes them (at once after a conflict, once connected again after a
loss); what raised did not happen. Callers treat it as SQLite's "busy": refuse a submit
with `store_unavailable`, keep an attempt's end and record it later, try a claim again at
the next wake-up.
"""

from __future__ import annotations

from bgjobd.store.sqlite import is_busy


class StoreRetry(Exception):
    """Not now: the same call may work later; nothing of it was done."""


class StoreOffline(StoreRetry):
    """The store's server cannot be reached now; the store reconnects with backoff."""


class StoreConflict(StoreRetry):
    """The server undid the transaction (a deadlock with another node); its kept writes
    were redone at once in a new one."""


class StoreGone(StoreRetry):
    """The store's tables are no longer there (its PostgreSQL schema dropped, or one of its
    tables, under the running node): nothing can be stored or read any more. A StoreRetry,
    so that callers meanwhile refuse and keep as they do offline; the daemon's health check
    sees `PostgresStore.gone` and stops it, as when SQLite's file is deleted."""


class KeyHeld(StoreConflict):
    """A submit waited its short while for a key that another transaction, still open,
    holds (an application's `enqueue_in` of the same idempotency or unique key, not
    committed yet): nothing of it was stored, and the transaction's other writes were
    redone. Once that transaction ends the submit finds the key stored, or free."""


def is_transient(exc: BaseException) -> bool:
    """Whether a store error means "not now, later": SQLite's lock held past the wait, a
    server out of reach, a transaction undone by a conflict."""
    return isinstance(exc, StoreRetry) or is_busy(exc)
