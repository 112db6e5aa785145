"""Capturing what a job prints into `logs/jobs/<id>.log`.

During an attempt the worker's file descriptors 1 and 2 point at a scratch file of its own,
so anything the job or a process it starts prints lands there. When the attempt ends, a
scratch file with something in it becomes the job's output file (renamed: a process the job
left behind keeps writing into the right file), and a fresh scratch file is opened; an
empty one is simply used again. A job that prints nothing costs no file operation at all,
and there is no empty file per job. If the daemon has to kill a worker mid-attempt, it
moves the scratch file in the same way (`salvage`), so a timed-out job's output is kept.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def scratch_path(directory: Path, worker_pid: int) -> Path:
    return directory / f".worker-{worker_pid}.out"


def keep(scratch: Path, target: Path) -> None:
    """Make the scratch file's contents the job's output (after any earlier attempt's)."""
    if target.exists():
        with scratch.open("rb") as source, target.open("ab") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        scratch.unlink()
    else:
        scratch.rename(target)


def salvage(directory: Path, worker_pid: int, target: Path) -> None:
    """After killing a worker mid-attempt: keep what its job printed, drop the rest."""
    scratch = scratch_path(directory, worker_pid)
    with contextlib.suppress(FileNotFoundError):
        if scratch.stat().st_size:
            keep(scratch, target)
        else:
            scratch.unlink()


class Output:
    """The worker's side: fds 1 and 2 on the scratch file during an attempt, on /dev/null
    between attempts."""

    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._scratch: Path | None = None
        self._fd = -1
        self._target: Path | None = None

    def capture(self, target: str) -> None:
        self._flush()
        self._target = Path(target)
        scratch = scratch_path(self._target.parent, os.getpid())
        if scratch != self._scratch:  # first attempt, or the storage moved (a reload)
            self.close()
            self._open(scratch)
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)

    def release(self) -> None:
        self._flush()
        os.dup2(self._devnull, 1)
        os.dup2(self._devnull, 2)
        if self._target is None or self._scratch is None:
            return
        if os.fstat(self._fd).st_size:
            os.close(self._fd)
            self._fd = -1
            keep(self._scratch, self._target)
            self._open(self._scratch)
        self._target = None

    def close(self) -> None:
        if self._scratch is not None:
            with contextlib.suppress(OSError):
                self._scratch.unlink()

    def _open(self, scratch: Path) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        scratch.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(scratch, flags, 0o644)
        self._scratch = scratch

    @staticmethod
    def _flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
