"""The spool: jobs submitted while no daemon answered, one file each, beside the store.

    <storage>/spool/<sha256 of the key>.job      msgpack of `Spooled` (the spec, with its key)
    <storage>/spool/drainer.lock                 held (flock) by the one drainer at work

A client writes a file atomically (a temporary name, then rename) with explicit modes: it
runs with the application's umask, not the daemon's. Not the SQLite store itself: a paused
daemon may hold its write lock, and a submit must not wait for that.

A file stays until its job is the daemon's (imported, or taken over from a drainer) or has
ended in the drainer's hands: while it exists, someone will look after the job. The
idempotency key makes every import of it the same job.

Imported by the client library: only light modules here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from bgjobs.model import JobSpec

SUFFIX: Final = ".job"
LOCK_NAME: Final = "drainer.lock"
REJECTED_SUFFIX: Final = ".rejected"
"""A file that could not be imported (unreadable, or refused by a changed configuration):
kept for an operator, never looked at again."""


class Spooled(msgspec.Struct, frozen=True):
    spec: JobSpec
    """With `run_at` set for a delayed job: the delay counts from the submit, not from
    whenever the job is imported."""
    spooled_at: float


@dataclass(frozen=True)
class Modes:
    directory: int
    file: int
    gid: int | None = None


def directory_of(storage_dir: Path) -> Path:
    return storage_dir / "spool"


def file_name(key: str) -> str:
    # Keys are the client's strings (any characters, up to 200): hashed into a file name.
    return hashlib.sha256(key.encode()).hexdigest() + SUFFIX


def normalized(spec: JobSpec, now: float) -> JobSpec:
    if spec.run_at is None and spec.delay > 0:
        return msgspec.structs.replace(
            spec, run_at=datetime.fromtimestamp(now + spec.delay, UTC), delay=0.0
        )
    return spec


def _make_directory(path: Path, modes: Modes) -> None:
    try:
        os.mkdir(path, modes.directory)
    except FileExistsError:
        return
    # Explicitly: the caller's umask may be anything, and mkdir ignores the setgid bit.
    os.chmod(path, modes.directory)
    if modes.gid is not None:
        with contextlib.suppress(OSError):
            os.chown(path, -1, modes.gid)


def prepare(storage_dir: Path, modes: Modes) -> Path:
    """The spool directory, made (with the storage directory) if missing."""
    spool = directory_of(storage_dir)
    if not spool.is_dir():
        storage_dir.parent.mkdir(parents=True, exist_ok=True)
        _make_directory(storage_dir, modes)
        _make_directory(spool, modes)
    return spool


def write(spool: Path, spec: JobSpec, now: float, modes: Modes, *, fsync: bool) -> Path:
    """Store the job durably under its key (the spec must carry one); returns its path."""
    assert spec.key is not None
    data = msgspec.msgpack.encode(Spooled(normalized(spec, now), now))
    final = spool / file_name(spec.key)
    temporary = spool / f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, modes.file)
    try:
        os.fchmod(fd, modes.file)  # the umask may have taken bits the group mode wants
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    os.close(fd)
    os.rename(temporary, final)
    if fsync:
        directory = os.open(spool, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return final


def pending(spool: Path) -> list[Path]:
    """The spooled jobs, oldest first (one scandir: cheap when, as usual, there are none)."""
    found: list[tuple[float, str, Path]] = []
    try:
        with os.scandir(spool) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((entry.stat().st_mtime, entry.name, Path(entry.path)))
    except FileNotFoundError:
        return []
    return [path for _, _, path in sorted(found)]


class Unreadable(Exception):
    pass


def read(path: Path) -> Spooled | None:
    """The spooled job; None if the file is gone (imported meanwhile); Unreadable if it
    is not a spooled job."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.msgpack.decode(data, type=Spooled)
    except msgspec.DecodeError as exc:
        raise Unreadable(f"{path.name}: {exc}") from None


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def reject(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, path.with_name(path.name + REJECTED_SUFFIX))


def lock_path(spool: Path) -> Path:
    return spool / LOCK_NAME


def try_lock(spool: Path, file_mode: int) -> int | None:
    """The drainer lock's descriptor, locked; None when a drainer holds it."""
    import fcntl  # POSIX only: imported where used, so the client library loads anywhere

    fd = os.open(lock_path(spool), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
