"""When the next scheduled job comes due: one exact timer, armed for the earliest due time
the store holds (any process may have scheduled it), never a poll.

The store is the authority: the timer only wakes the engine, which then moves every due job
to the queue in one statement. Its own submits and retries arm it directly; another
process's arrive with the engine's check for changes (`refresh`).

A due time that is NaN, infinite or outside 1970..9999 (which every entry point refuses, so
only a damaged store could hold one) is clamped: the timer would otherwise fire for it
forever, or never.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from bgjobs.times import clamp_due_time, due_time_is_sane


class DueSource(Protocol):
    """Where the due times are: the store's whole queue (a daemon), or one runner's own
    jobs (`run_job.py`)."""

    def next_due(self) -> float | None: ...


class DueTimer:
    def __init__(self, store: DueSource, on_due: Callable[[], None]) -> None:
        self._store = store
        self._on_due = on_due
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopped = False

    def refresh(self) -> None:
        """Arm for the store's earliest due time (after a change made elsewhere)."""
        due = self._store.next_due()
        self._set(float("inf") if due is None else due)

    def add(self, run_at: float) -> None:
        """A job of this process's is due at `run_at`."""
        if _sane(run_at) < self._timer_at:
            self._set(run_at)

    def stop(self) -> None:
        self._stopped = True
        self._cancel()

    def _set(self, due: float) -> None:
        self._cancel()
        if self._stopped or due == float("inf"):
            return
        due = _sane(due)
        loop = asyncio.get_running_loop()
        self._timer_at = due
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.time()), self._fire)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = float("inf")

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        self._on_due()
        self.refresh()


def _sane(run_at: float) -> float:
    return run_at if due_time_is_sane(run_at) else clamp_due_time(run_at)
