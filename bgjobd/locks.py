"""One lock file per running attempt, `storage/jobs/<Class>_<method>_<id>.lock`.

It is created atomically (O_EXCL) with JSON describing the attempt, and removed when the
attempt ends, however it ends. Removing it by hand cancels the job: that was the original
dashboard's meaning of cancel, and the daemon keeps it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Final

import msgspec

SUFFIX: Final = ".lock"


class LockInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    class_name: str = msgspec.field(name="class")
    method: str
    pid: int
    attempt: int
    started_at: float
    owner: str = ""


class LockHeld(Exception):
    """Another live process holds the lock of this job."""


def lock_name(class_name: str, method: str, job_id: int) -> str:
    # Class and method names are allow-listed identifiers, so they cannot leave the directory.
    return f"{class_name}_{method}_{job_id}{SUFFIX}"


def lock_path(locks_dir: Path, class_name: str, method: str, job_id: int) -> Path:
    return locks_dir / lock_name(class_name, method, job_id)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def read_lock(path: Path) -> LockInfo | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=LockInfo)
    except (OSError, msgspec.DecodeError):
        return None


def acquire(path: Path, info: LockInfo) -> None:
    """Create the lock file; a stale one (its process gone) is replaced, a live one raises."""
    data = msgspec.json.encode(info)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            # The directory was removed by hand: made again (the daemon's store check says
            # so in the log), rather than every attempt crashing its worker.
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        except FileExistsError:
            holder = read_lock(path)
            if holder is not None and holder.pid != info.pid and pid_alive(holder.pid):
                raise LockHeld(
                    f"job {info.id} is already running in process {holder.pid}"
                ) from None
            release(path)
            continue
        try:
            os.write(fd, data)
        except OSError:
            # A full disk: the file exists, which is what cancel and recovery look at;
            # its description is a courtesy (an empty one reads as unknown).
            pass
        finally:
            os.close(fd)
        return
    raise LockHeld(f"could not create {path.name}")


def release(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_stale(locks_dir: Path) -> list[Path]:
    """Remove lock files whose process is gone (left by a crash); return what was removed."""
    removed = []
    for path in locks_dir.glob(f"*{SUFFIX}"):
        holder = read_lock(path)
        if holder is None or not pid_alive(holder.pid):
            release(path)
            removed.append(path)
    return removed


def job_ids(locks_dir: Path) -> set[int]:
    """The ids of the jobs that have a lock file (named `Class_method_ID.lock`)."""
    numbers = (
        path.name.removesuffix(SUFFIX).rpartition("_")[2] for path in locks_dir.glob(f"*{SUFFIX}")
    )
    return {int(number) for number in numbers if number.isdigit()}


def make_info(
    job_id: int, class_name: str, method: str, *, pid: int, attempt: int, owner: str
) -> LockInfo:
    return LockInfo(
        id=job_id,
        class_name=class_name,
        method=method,
        pid=pid,
        attempt=attempt,
        started_at=time.time(),
        owner=owner,
    )
