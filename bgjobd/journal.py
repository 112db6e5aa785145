"""Group commit: store writes run at once on the event loop's thread, and one commit makes
all of them durable together.

A submit is acknowledged only after `journal.committed()`, which commits at the end of
the loop iteration, so however many clients submit at the same moment they share one
commit. Any other write (a claim, an attempt's outcome) opens a transaction that commits
with the next submit's, or within LAZY_COMMIT_SECONDS when none comes: fewer commits,
each carrying more, and never a transaction left open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from bgjobd.store.base import Store

LAZY_COMMIT_SECONDS: Final = 0.002


class CommitFailed(Exception):
    pass


class Journal:
    def __init__(self, store: Store, on_error: Callable[[str], None]) -> None:
        self.store = store
        self._on_error = on_error
        self._pending: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[Callable[[BaseException | None], None]] = []
        self._lazy: asyncio.TimerHandle | None = None
        store.on_begin = self._commit_soon

    def committed(self) -> asyncio.Future[None]:
        """A future that completes once every write made so far is committed."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self.flush)
        return self._pending

    def when_committed(self, callback: Callable[[BaseException | None], None]) -> None:
        """Commit at the end of this loop iteration, like `committed()`, and then call
        `callback(None)` (or `callback(error)`) at once, inside the commit: a submit's
        reply goes out right after its commit, ahead of whatever else is queued."""
        self.committed()
        self._waiters.append(callback)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the writes made so far are committed (e.g. publish events);
        it may wait for the lazy commit."""
        self._callbacks.append(callback)
        self._commit_soon()

    def _commit_soon(self) -> None:
        if self._lazy is None and self._pending is None:
            self._lazy = asyncio.get_running_loop().call_later(LAZY_COMMIT_SECONDS, self.flush)

    def flush(self) -> None:
        if self._lazy is not None:
            self._lazy.cancel()
            self._lazy = None
        pending, self._pending = self._pending, None
        callbacks, self._callbacks = self._callbacks, []
        waiters, self._waiters = self._waiters, []
        try:
            self.store.commit()
        except Exception as exc:  # noqa: BLE001  # reported to every waiter and logged
            self.store.rollback()
            self._on_error(f"commit failed, the batch was rolled back: {exc}")
            failure = CommitFailed(str(exc))
            if pending is not None and not pending.done():
                pending.set_exception(failure)
            for waiter in waiters:
                waiter(failure)
            return
        if pending is not None and not pending.done():
            pending.set_result(None)
        for waiter in waiters:
            waiter(None)
        for callback in callbacks:
            callback()
