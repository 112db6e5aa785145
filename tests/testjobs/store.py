"""Test jobs for the store's tests (a full disk)."""

from __future__ import annotations

import time


class SlowBigResult:
    def handle(self, seconds: float, size: int) -> str:
        """Wait, then return `size` bytes: recording the outcome needs room in the store."""
        time.sleep(seconds)
        return "r" * size
