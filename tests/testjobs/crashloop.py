"""Jobs for the SIGKILL-under-load loop: each attempt leaves one line in a shared file,
so the lines count how many times each job really began."""

from __future__ import annotations

import os
import time
from typing import Any


def _tally(path: str, token: str, hold: float | str) -> str:
    # One short O_APPEND write per attempt: lines from concurrent workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    time.sleep(float(hold))
    return token


class Tally:
    def handle(self, path: str, token: str, hold: float | str = 0) -> str:
        return _tally(path, token, hold)

    def link(self, previous: Any, path: str, token: str, hold: float | str = 0) -> str:
        """A later link of a chain: gets the previous link's result first."""
        return _tally(path, token, hold)
