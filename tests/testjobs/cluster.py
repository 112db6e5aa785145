"""Jobs for the tests of several daemons on one store: each leaves evidence of where and
when it ran, written with O_APPEND in one write so that concurrent runs never mix lines."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


class Interval:
    """Holds for `hold` seconds, then appends `start end` (wall clock) to `path`: two runs
    whose intervals overlap ran at the same time."""

    def handle(self, path: str, hold: float | str = 0.05) -> None:
        start = time.time()
        time.sleep(float(hold))
        _append(path, f"{start!r} {time.time()!r}")


class Group:
    """Starts a long `sleep` child in its own process group, writes `pid pgid child`, then
    sleeps: a test can watch the whole group go when the attempt is stopped."""

    def handle(self, path: str, seconds: float | str = 60) -> None:
        child = subprocess.Popen(["sleep", "300"])
        Path(path + ".tmp").write_text(f"{os.getpid()} {os.getpgid(0)} {child.pid}")
        os.replace(path + ".tmp", path)  # whole, never half written
        time.sleep(float(seconds))
