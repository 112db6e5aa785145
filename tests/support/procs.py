"""Finding and killing every process a test started, marked by an environment variable
that each descendant inherits."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.support.waiting import wait_for

MARKER_ENV = "BGJOBS_TEST_MARKER"


def is_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def marked_processes(marker: str) -> list[int]:
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and not is_gone(int(entry)):
            found.append(int(entry))
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL every live process carrying the marker; return their pids."""
    pids = marked_processes(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        wait_for(lambda: all(is_gone(pid) for pid in pids), timeout=10, what="killed processes")
    return pids
