"""Group commit: store writes run at once on the event loop's thread, and one commit makes
all of them durable together.

A submit is acknowledged only after `journal.committed()`, which commits at the end of
the loop iteration, so however many clients submit at the same moment they share one
commit. The first submit of an iteration, with nothing else awaiting a commit, may instead
be committed by the store on its own at once (`alone()`: on PostgreSQL one statement
outside a transaction, one round trip instead of three); it is answered in turn all the
same. Any other write (a claim, an attempt's outcome) opens a transaction that commits
with the next submit's, or within the store's `commit_within` when none comes (SQLite:
2 ms; PostgreSQL: 10 ms): fewer commits, each carrying more, and never a transaction left
open.

A failed commit (a full disk) loses nothing the daemon acted on: the submits of the batch
are told `store_full` (or `store_unavailable`) at once, and every other write of it (claims,
attempt outcomes, promotions, cancels) is redone by the store in a new transaction whose
commit is retried with backoff; meanwhile submits are refused and internal writes join
that transaction. If even the redo fails, or the store is gone, nothing can be trusted in
memory any more: `on_fatal` stops the daemon with a non-zero exit, and recovery at the
next start rebuilds from what the store holds.

A store whose server cannot be reached (PostgreSQL restarting: `StoreOffline`) is waited
for however long it takes, never given up on: its kept writes are redone once it has
reconnected, and submits are refused with `store_unavailable` until then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol

from bgjobd.store.offline import StoreOffline
from bgjobd.store.sqlite import is_full
from bgjobs.errors import RequestFailed, StoreFull, StoreUnavailable
from bgjobs.protocol import ErrorCode

RETRY_FIRST_SECONDS: Final = 0.01
RETRY_MAX_SECONDS: Final = 1.0
GIVE_UP_SECONDS: Final = 30.0
"""A commit failing for another reason than a full disk (I/O errors, a read-only file) is
retried this long, then the daemon stops: a full disk empties, a broken one does not."""


DURABLE: Final = -1
"""A waiter whose writes were committed before it waited: no rollback can lose them."""


class CommitFailed(Exception):
    pass


class JournalStore(Protocol):
    """What the journal needs of a store (SQLiteStore and PostgresStore have it)."""

    on_begin: Callable[[], None] | None
    rollbacks: int
    commit_within: float
    """Seconds a write may wait for its commit when no submit carries it."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def redo_kept_writes(self) -> int: ...

    def checkpoint_soon(self) -> None: ...


class Health(Protocol):
    """The store's health, as the journal consults it (storehealth.StoreHealth)."""

    def admit(self) -> None:
        """Raise StoreFull or StoreUnavailable if a submit cannot be stored now."""

    def verify_database(self) -> None:
        """Raise StoreUnavailable if the database file is no longer the one opened."""

    def commit_failed_full(self) -> None:
        """A commit met a full disk: free the reserve for internal writes."""

    @property
    def short_of_space(self) -> bool:
        """Whether submits are refused for want of space."""


def _store_error(exc: BaseException) -> RequestFailed:
    if isinstance(exc, RequestFailed):
        return exc
    if is_full(exc):
        return StoreFull(ErrorCode.STORE_FULL, f"the store's disk is full: {exc}")
    return StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, f"the store cannot commit: {exc}")


class Journal:
    def __init__(
        self,
        store: JournalStore,
        on_error: Callable[[str], None],
        *,
        health: Health | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self._on_error = on_error
        self._health = health
        self._on_fatal = on_fatal
        self._pending: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[tuple[int, Callable[[BaseException | None], None]]] = []
        self._lazy: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = RETRY_FIRST_SECONDS
        self._failing_since: float | None = None
        self._failures = 0
        self.stalled: RequestFailed | None = None
        """Why commits are failing (they are being retried), else None."""
        self.lost: StoreUnavailable | None = None
        """Set once the store is gone: nothing is committed any more."""
        self._patient = True
        store.on_begin = self._commit_soon

    # admission -----------------------------------------------------------------------------

    def admit(self) -> None:
        """Raise (StoreFull, StoreUnavailable) unless a submit can be stored now: a submit
        made while commits fail would only wait for a disk that may not come back."""
        if self.lost is not None:
            raise self.lost
        if self.stalled is not None:
            raise type(self.stalled)(self.stalled.code, str(self.stalled))
        if self._health is not None:
            self._health.admit()

    # committing ----------------------------------------------------------------------------

    def committed(self) -> asyncio.Future[None]:
        """A future that completes once every write made so far is committed."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            if self._retry is None:
                loop.call_soon(self.flush)
        return self._pending

    def when_committed(
        self, callback: Callable[[BaseException | None], None], *, durable: bool = False
    ) -> None:
        """Commit at the end of this loop iteration, like `committed()`, and then call
        `callback(None)` (or `callback(error)`) at once, inside the commit: a submit's
        reply goes out right after its commit, ahead of whatever else is queued.

        `durable`: the submit's rows were committed on their own already (`alone`): the
        callback comes at the same point, in turn with the others, and is told None
        whatever becomes of this commit."""
        self.committed()
        self._waiters.append((DURABLE if durable else self.store.rollbacks, callback))

    def alone(self) -> bool:
        """Whether nothing awaits a commit in this loop iteration: a submit now may be
        committed on its own at once (`Store.submit`'s `alone`), when that costs less than
        joining the transaction; the submits after it in the same iteration share one
        commit, as before, so a burst costs one commit more at most."""
        return self._pending is None and self._retry is None and self.lost is None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the writes made so far are committed (e.g. publish events);
        it may wait for the lazy commit."""
        self._callbacks.append(callback)
        self._commit_soon()

    def _commit_soon(self) -> None:
        if self._lazy is None and self._pending is None and self._retry is None:
            delay = self.store.commit_within
            self._lazy = asyncio.get_running_loop().call_later(delay, self.flush)

    def impatient(self) -> None:
        """Shutdown: a commit that keeps failing fails its waiters instead of keeping them
        for a retry, so that stopping never waits for disk space."""
        self._patient = False

    def close(self) -> None:
        """Stop committing by timer (the daemon makes the last commit itself)."""
        for timer in (self._lazy, self._retry):
            if timer is not None:
                timer.cancel()
        self._lazy = self._retry = None

    def flush(self) -> None:
        for timer in (self._lazy, self._retry):
            if timer is not None:
                timer.cancel()
        self._lazy = self._retry = None
        pending, self._pending = self._pending, None
        callbacks, self._callbacks = self._callbacks, []
        waiters, self._waiters = self._waiters, []
        if self.lost is not None:
            self._abandon(self.lost, pending, callbacks, waiters)
            return
        try:
            if self._health is not None:
                self._health.verify_database()
            self.store.commit()
        except Exception as exc:  # noqa: BLE001  # every failure is answered, none escapes
            self._failed(exc, pending, callbacks, waiters)
            return
        self._recovered()
        if pending is not None and not pending.done():
            pending.set_result(None)
        rollbacks = self.store.rollbacks
        for made_at, waiter in waiters:
            # A submit written before SQLite dropped the transaction under a failing
            # statement was not stored (its rows were not redone).
            waiter(None if made_at in (rollbacks, DURABLE) else self._lost_writes())
        for callback in callbacks:
            callback()

    def _lost_writes(self) -> RequestFailed:
        """What a submit is told whose transaction was lost under it: on SQLite a failed
        write (a full disk), on a server's store the connection gone with it."""
        if hasattr(self.store, "offline"):
            return StoreUnavailable(
                ErrorCode.STORE_UNAVAILABLE, "the jobs were lost with the store's connection"
            )
        return StoreFull(ErrorCode.STORE_FULL, "the jobs were lost to a failed write")

    def _recovered(self) -> None:
        """A commit worked: whatever failed before is over."""
        if self.stalled is not None:
            self._on_error(f"commits work again after {self._failures} failure(s)")
            self.stalled = None
        self._failures = 0
        self._failing_since = None
        self._retry_delay = RETRY_FIRST_SECONDS
        if self._health is not None and self._health.short_of_space:
            self.store.checkpoint_soon()  # the WAL is reused only once checkpointed

    def _failed(
        self,
        exc: Exception,
        pending: asyncio.Future[None] | None,
        callbacks: list[Callable[[], None]],
        waiters: list[tuple[int, Callable[[BaseException | None], None]]],
    ) -> None:
        if isinstance(exc, StoreUnavailable):  # the database file is no longer ours
            self.lost = exc
            self._abandon(exc, pending, callbacks, waiters)
            self._fatal(f"the store is gone: {exc}")
            return
        error = _store_error(exc)
        # The submits learn at once that their jobs were not stored (but those committed
        # on their own before, that they were).
        for made_at, waiter in waiters:
            waiter(None if made_at == DURABLE else error)
        try:
            redone = self.store.redo_kept_writes()
        except Exception as again:  # noqa: BLE001  # the last resort: a restart recovers
            self.lost = StoreUnavailable(
                ErrorCode.STORE_UNAVAILABLE, f"the store failed and could not redo: {again}"
            )
            self._abandon(self.lost, pending, [], [])
            self._fatal(f"commit failed ({exc}) and its writes could not be redone ({again})")
            return
        now = time.monotonic()
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
            self._on_error(
                f"commit failed ({exc}): this batch's submits were refused, its other "
                f"{redone} write(s) are kept and retried; submits are refused meanwhile"
            )
        self.stalled = error
        if isinstance(error, StoreFull):
            if self._health is not None:
                self._health.commit_failed_full()
            self.store.checkpoint_soon()
        waits_for_server = isinstance(exc, StoreOffline)  # a server restarting comes back
        if (
            not isinstance(error, StoreFull)
            and not waits_for_server
            and now - self._failing_since > GIVE_UP_SECONDS
        ):
            self.lost = StoreUnavailable(error.code, str(error))
            self._abandon(self.lost, pending, callbacks, [])
            self._fatal(f"commits have failed for {GIVE_UP_SECONDS:g}s: {exc}")
            return
        if not self._patient and pending is not None:
            # Stopping: whoever waits goes on; the writes stay for the daemon's last commit.
            if not pending.done():
                pending.set_exception(CommitFailed(str(exc)))
            pending = None
        # Kept for the retry: whoever waits for these writes waits on.
        self._pending = pending
        self._callbacks = callbacks + self._callbacks
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2, RETRY_MAX_SECONDS)
        self._retry = asyncio.get_running_loop().call_later(delay, self.flush)

    def _abandon(
        self,
        error: BaseException,
        pending: asyncio.Future[None] | None,
        callbacks: list[Callable[[], None]],
        waiters: list[tuple[int, Callable[[BaseException | None], None]]],
    ) -> None:
        try:
            self.store.rollback()
        except Exception as exc:  # noqa: BLE001  # the store is failing already
            self._on_error(f"rollback failed: {exc}")
        if pending is not None and not pending.done():
            pending.set_exception(error)
        for made_at, waiter in waiters:
            waiter(None if made_at == DURABLE else error)
        for callback in callbacks:
            callback()

    def _fatal(self, message: str) -> None:
        self._on_error(message)
        if self._on_fatal is not None:
            self._on_fatal(message)
