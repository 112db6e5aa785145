"""Group commit: store writes run at once on the event loop's thread, and one commit per
loop iteration makes all of them durable together.

A submit is acknowledged only after `await journal.committed()`, so however many clients
submit at the same moment, they share one commit instead of paying one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bgjobd.store.base import Store


class CommitFailed(Exception):
    pass


class Journal:
    def __init__(self, store: Store, on_error: Callable[[str], None]) -> None:
        self.store = store
        self._on_error = on_error
        self._pending: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[], None]] = []

    def committed(self) -> asyncio.Future[None]:
        """A future that completes once every write made so far is committed."""
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self.flush)
        return self._pending

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the writes made so far are committed (e.g. publish events)."""
        self._callbacks.append(callback)
        self.committed()

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        callbacks, self._callbacks = self._callbacks, []
        try:
            self.store.commit()
        except Exception as exc:  # noqa: BLE001  # reported to every waiter and logged
            self.store.rollback()
            self._on_error(f"commit failed, the batch was rolled back: {exc}")
            if pending is not None and not pending.done():
                pending.set_exception(CommitFailed(str(exc)))
            return
        if pending is not None and not pending.done():
            pending.set_result(None)
        for callback in callbacks:
            callback()
