"""How many jobs this node finished in the last minute (the stats' throughput): a window
of finish times, trimmed as it is read or added to."""

from __future__ import annotations

import time
from collections import deque
from typing import Final

WINDOW_SECONDS: Final = 60.0


class FinishCounter:
    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._finishes: deque[float] = deque()

    def add(self, at: float) -> None:
        """A job reached its final state at `at` (a time.time())."""
        self._finishes.append(at)
        self._trim(at)

    def count(self, now: float | None = None) -> int:
        """Finishes within the window before `now`."""
        self._trim(time.time() if now is None else now)
        return len(self._finishes)

    def _trim(self, now: float) -> None:
        horizon = now - self._window
        while self._finishes and self._finishes[0] < horizon:
            self._finishes.popleft()
