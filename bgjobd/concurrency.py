"""Overlap control: `[jobs.CLASS] overlap = false` (one at a time) and `max_concurrency`.

A job whose class is at its limit is parked, never rejected; when a job of that class
finishes, the first parked one (in dispatch order) goes back to the ready queue.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

from bgjobd.store.base import WaitingEntry
from bgjobs.config import Config


class ConcurrencyLimits:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._running: defaultdict[str, int] = defaultdict(int)
        self._parked: defaultdict[str, list[tuple[int, float, int, WaitingEntry]]] = defaultdict(
            list
        )

    def reconfigure(self, config: Config) -> list[WaitingEntry]:
        """Apply new limits; returns parked jobs that the new limits let go."""
        self._config = config
        released: list[WaitingEntry] = []
        for class_name in list(self._parked):
            released.extend(self._release(class_name))
        return released

    def limit_of(self, class_name: str) -> int | None:
        settings = self._config.job_settings(class_name)
        if settings.max_concurrency is not None:
            return settings.max_concurrency
        return None if settings.overlap else 1

    def try_start(self, entry: WaitingEntry) -> bool:
        """Count the job as running, or park it (False) when its class is at its limit."""
        limit = self.limit_of(entry.class_name)
        if limit is not None and self._running[entry.class_name] >= limit:
            heapq.heappush(
                self._parked[entry.class_name],
                (entry.rank, entry.run_at, entry.job_id, entry),
            )
            return False
        self._running[entry.class_name] += 1
        return True

    def finished(self, entry: WaitingEntry) -> list[WaitingEntry]:
        """Uncount the job; returns parked jobs of its class that may now run."""
        self._running[entry.class_name] -= 1
        return self._release(entry.class_name)

    def _release(self, class_name: str) -> list[WaitingEntry]:
        parked = self._parked.get(class_name)
        if not parked:
            return []
        limit = self.limit_of(class_name)
        free = len(parked) if limit is None else max(0, limit - self._running[class_name])
        released = [heapq.heappop(parked)[3] for _ in range(min(free, len(parked)))]
        if not parked:
            del self._parked[class_name]
        return released

    @property
    def parked_count(self) -> int:
        return sum(len(parked) for parked in self._parked.values())
