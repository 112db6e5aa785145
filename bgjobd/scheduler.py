"""The order in which waiting jobs run.

Scheduled jobs sit in a heap keyed by (due time, id), woken by one exact timer set for the
earliest of them: no polling. Due jobs move to the ready heap, keyed by (priority, due time,
id): every high job before any medium one, first due first within a priority.

Only a window of the scheduled jobs lives in memory: every one whose key is at most the
`horizon`. The rest stay in the store and are read, in key order, when the window runs low,
so a million jobs scheduled for next week cost neither start-up time nor memory.

Every due time is checked on the way in: one that is NaN, infinite or outside 1970..9999
(which every entry point refuses, so only a damaged store could hold one) is said on
stderr and clamped. A NaN in a heap would never be due and would break its order, and the
timer would fire for it forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import math
import sys
import time
from collections.abc import Callable
from typing import Final

from bgjobd.store.base import Store, WaitingEntry
from bgjobs.times import clamp_due_time, due_time_is_sane

WINDOW: Final = 20_000
"""Scheduled jobs read into memory at a time."""

_Key = tuple[float, int]


class Scheduler:
    def __init__(
        self,
        store: Store,
        on_due: Callable[[list[WaitingEntry]], None],
        *,
        window: int = WINDOW,
    ) -> None:
        self._store = store
        self._on_due = on_due
        self._window = window
        self._scheduled: list[tuple[float, int, WaitingEntry]] = []
        self._ready: list[tuple[int, float, int, WaitingEntry]] = []
        self._horizon: _Key | None = None
        self._all_loaded = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    # loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the queued jobs and the first window of scheduled ones from the store."""
        for entry in self._store.queued():
            self.add_ready(entry)
        self._refill()

    def _refill(self) -> None:
        entries = self._store.scheduled(self._horizon, self._window)
        for entry in map(_sane, entries):
            heapq.heappush(self._scheduled, (entry.run_at, entry.job_id, entry))
        if entries:
            # The store's own key (an infinity orders fine in SQL), unless it is no number.
            last = entries[-1]
            run_at = last.run_at if _is_number(last.run_at) else clamp_due_time(last.run_at)
            self._horizon = (run_at, last.job_id)
        self._all_loaded = len(entries) < self._window

    def _in_window(self, entry: WaitingEntry) -> bool:
        if self._all_loaded:
            return True
        return self._horizon is not None and (entry.run_at, entry.job_id) <= self._horizon

    # adding --------------------------------------------------------------------------------

    def add_scheduled(self, entry: WaitingEntry) -> None:
        entry = _sane(entry)
        if not self._in_window(entry):
            return  # the store has it; a later refill reads it in time
        heapq.heappush(self._scheduled, (entry.run_at, entry.job_id, entry))
        if entry.run_at < self._timer_at:
            self._arm()

    def add_ready(self, entry: WaitingEntry) -> None:
        entry = _sane(entry)
        heapq.heappush(self._ready, (entry.rank, entry.run_at, entry.job_id, entry))

    # taking --------------------------------------------------------------------------------

    def pop_ready(self) -> WaitingEntry | None:
        return heapq.heappop(self._ready)[3] if self._ready else None

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    @property
    def scheduled_in_memory(self) -> int:
        return len(self._scheduled)

    def ready_entries(self) -> list[WaitingEntry]:
        """The ready jobs in dispatch order (for listings; sorts a copy)."""
        return [item[3] for item in sorted(self._ready)]

    def first_ready(self, count: int) -> list[WaitingEntry]:
        """The next `count` ready jobs in dispatch order, without sorting the whole queue."""
        return [item[3] for item in heapq.nsmallest(count, self._ready)]

    # the timer -----------------------------------------------------------------------------

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = float("inf")

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._scheduled:
            self._timer_at = float("inf")
            return
        due = self._scheduled[0][0]
        loop = asyncio.get_running_loop()
        self._timer_at = due
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        due: list[WaitingEntry] = []
        while self._scheduled and self._scheduled[0][0] <= now:
            due.append(heapq.heappop(self._scheduled)[2])
            if not self._all_loaded and len(self._scheduled) < self._window // 4:
                self._refill()
        if due:
            self._on_due(due)
        self._arm()


def _is_number(value: float | None) -> bool:
    return isinstance(value, float | int) and not math.isnan(value)


def _sane(entry: WaitingEntry) -> WaitingEntry:
    """The entry itself, or a copy with its due time clamped into the range the scheduler
    can order and reach."""
    if due_time_is_sane(entry.run_at):
        return entry
    clamped = clamp_due_time(entry.run_at)
    print(
        f"bgjobd: job {entry.job_id} has the due time {entry.run_at!r}; using {clamped:.0f}",
        file=sys.stderr,
        flush=True,
    )
    return dataclasses.replace(entry, run_at=clamped)
