"""The daemon's budget for large frames being received, shared by every connection.

Before a connection reads the body of a frame over `SMALL_FRAME_BYTES` it reserves the
frame's announced length; it gives it back once the body is complete or the connection
is gone. When the budget is spent, the connection stops reading and waits its turn in
arrival order (no large frame can starve behind smaller ones), so no combination of
clients makes the daemon hold more than the budget in partly received large frames.
"""

from __future__ import annotations

from collections.abc import Callable


class BufferBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0
        self._waiting: dict[object, tuple[int, Callable[[int], None]]] = {}
        """Who waits, in arrival order: how much, and what to call once it is theirs."""

    def reserve(self, who: object, size: int, granted: Callable[[int], None]) -> bool:
        """Take `size` bytes now (True), or queue `who` and call `granted(size)` later,
        once they are taken for it (False). `granted` runs inside whatever freed the room, so
        it should only note the grant and schedule the rest."""
        if not self._waiting and self.reserved + size <= self.limit:
            self.reserved += size
            return True
        self._waiting[who] = (size, granted)
        return False

    def set_limit(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            self._grant_waiting()

    def release(self, size: int) -> None:
        self.reserved -= size
        self._grant_waiting()

    def forget(self, who: object) -> None:
        """`who` no longer waits (its connection closed)."""
        if self._waiting.pop(who, None) is not None:
            self._grant_waiting()

    def is_waiting(self, who: object) -> bool:
        return who in self._waiting

    def _grant_waiting(self) -> None:
        while self._waiting:
            who, (size, granted) = next(iter(self._waiting.items()))
            if self.reserved + size > self.limit:
                return
            del self._waiting[who]
            self.reserved += size
            granted(size)
