"""Finding and killing every process a test started, marked by an environment variable
that each descendant inherits, or still a descendant of the test process."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.support.waiting import wait_for

MARKER_ENV = "BGJOBS_TEST_MARKER"
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

# A process that is on its way out when a test ends (a worker that has seen its daemon go)
# is not a leak: it gets this long to finish before it counts as left behind.
EXIT_GRACE_SECONDS = 5.0


def is_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def describe(pid: int) -> str:
    """`pid 123: python -m bgjobd --config ...`, for a failure message."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return f"pid {pid}: (gone)"
    return f"pid {pid}: " + " ".join(part.decode(errors="replace") for part in argv)


def _live_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def marked_processes(marker: str) -> list[int]:
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for pid in _live_pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and not is_gone(pid):
            found.append(pid)
    return found


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[1])


def descendants(root: int) -> set[int]:
    """The live (not zombie) processes below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for pid in _live_pids():
        parent = _parent_of(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, []))
    return {pid for pid in found if not is_gone(pid)}


def kill_all(pids: Iterable[int]) -> list[str]:
    """SIGKILL the given processes; return their descriptions, taken before the kill."""
    alive = [pid for pid in pids if not is_gone(pid)]
    described = [describe(pid) for pid in alive]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if alive:
        wait_for(lambda: all(is_gone(pid) for pid in alive), timeout=10, what="killed processes")
    return described


def settle(find: Iterable[int] | None = None, *, marker: str | None = None) -> list[int]:
    """The processes that `marker` (or the given pids) still names after the exit grace."""
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    while True:
        if marker is not None:
            left = marked_processes(marker)
        else:
            left = [pid for pid in find or () if not is_gone(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_marked(marker: str) -> list[str]:
    """SIGKILL every process still carrying the marker after the exit grace; describe them."""
    return kill_all(settle(marker=marker))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes in process group `pgid`."""
    found = []
    for pid in _live_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(pid)
    return found


@contextlib.contextmanager
def not_a_subreaper() -> Iterator[None]:
    """While inside, this process is not a child subreaper (the in-process engine tests make
    the test process one, for the rest of the session): what a command started inside
    daemonizes (PostgreSQL's postmaster, restarted by `pg_ctlcluster`) goes to init when
    its parent exits, not to this process, where it would count as a test's leftover."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, flag.value, 0, 0, 0)
