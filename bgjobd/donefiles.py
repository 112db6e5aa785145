"""An attempt's outcome on disk, `<lock file>.done`, from the moment the job returns until
the daemon has recorded it.

The worker writes it before it removes the attempt's lock file and reports, so a daemon
killed in between does not lose a finished run: recovery finds the file and records its
outcome instead of counting the attempt interrupted and running the job again. Whoever
records the attempt (the daemon once its commit is done, `run_job.py`, recovery) removes
the file. A file cut short (its worker killed while writing) does not decode and is
ignored; the lock file, still there, then says the attempt was under way.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from bgjobd.worker.messages import AttemptDone

SUFFIX: Final = ".done"
_decode = msgspec.msgpack.Decoder(AttemptDone).decode


def path_of(lock_path: str | os.PathLike[str]) -> str:
    return os.fspath(lock_path) + SUFFIX


def keep(lock_path: str | os.PathLike[str], done: AttemptDone) -> None:
    """Write the outcome beside the lock file. Never raises: without the file, a crash of
    the daemon at this moment counts the attempt as interrupted, as it did before."""
    with contextlib.suppress(OSError, TypeError, ValueError, OverflowError):
        data = msgspec.msgpack.encode(done)
        fd = os.open(
            path_of(lock_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def forget(lock_path: str | os.PathLike[str]) -> None:
    """The attempt is recorded: its file goes (if it was written at all)."""
    with contextlib.suppress(OSError):
        os.unlink(path_of(lock_path))


@dataclass(frozen=True)
class Finished:
    """An attempt that ended, as its worker wrote it down."""

    done: AttemptDone
    finished_at: float
    """When the file was written: the attempt's end, give or take the write."""
    path: Path

    @property
    def started_at(self) -> float:
        return self.finished_at - self.done.duration


def found(locks_dir: Path) -> dict[int, Finished]:
    """Every readable outcome file in the directory, by job id."""
    outcomes: dict[int, Finished] = {}
    for path in locks_dir.glob(f"*{SUFFIX}"):
        try:
            done = _decode(path.read_bytes())
            finished_at = path.stat().st_mtime
        except (OSError, msgspec.DecodeError):
            continue
        outcomes[done.job_id] = Finished(done, finished_at, path)
    return outcomes


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
