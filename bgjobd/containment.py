"""Containment without cgroups: the child subreaper, a process's descendants, ending them.

A job can start processes that leave its process group and session (double fork, setsid).
A subreaper catches them: when their parent dies, they become its children instead of
init's, so they can still be found (under /proc/PID/task/*/children) and killed. The worker
is a subreaper for its jobs' processes, the daemon for the orphans of a killed worker.
Linux only; elsewhere these functions find nothing and only the process group is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import Final

_PR_SET_CHILD_SUBREAPER: Final = 36
MAX_ROUNDS: Final = 50
"""Bounds the kill-and-reap rounds: each catches what the previous round's processes forked
while dying (SIGKILL leaves them no time for much)."""


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """The children of `pid` (of all its threads), zombies included."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(child) for child in _read(f"/proc/{pid}/task/{task}/children").split())
        except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN, or a task gone
            if not os.path.exists(f"/proc/{pid}/task/{task}"):
                continue
            return _children_by_parent(pid)
        except (OSError, ValueError):
            continue
    return found


def _children_by_parent(pid: int) -> list[int]:
    """The slow way: every process whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(_read(f"/proc/{entry}/stat").rsplit(b")", 1)[-1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _read(path: str) -> bytes:
    with open(path, "rb") as file:  # plain open: pathlib costs more than the read
        return file.read()


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, parents before their children."""
    found: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop(0)
        if not is_zombie(child):
            found.append(child)
            pending.extend(children(child))
    return found


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def end_descendants() -> int:
    """SIGKILL every descendant of this process and reap its children; the count killed.

    For the worker (a subreaper) when an attempt ends: whatever the job started dies with
    the attempt. Blocking, but only on processes just sent SIGKILL."""
    if not _has_children():
        return 0  # the common case, in one system call: nothing can be below
    me = os.getpid()
    killed = 0
    for _ in range(MAX_ROUNDS):
        found = descendants(me)
        for pid in found:
            kill(pid)
        killed += len(found)
        direct = children(me)
        for pid in direct:
            kill(pid)  # a child reparented since the walk was not in it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if not found and not direct:
            break
    return killed


def _has_children() -> bool:
    """False when this process has no child at all, live or zombie (reaping a zombie)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def kill_descendants() -> None:
    """SIGKILL every descendant without reaping (a thread may not reap: the main thread's
    job may be waiting for its own children)."""
    me = os.getpid()
    for _ in range(MAX_ROUNDS):
        found = descendants(me)
        if not found:
            return
        for pid in found:
            kill(pid)
