"""Attempts' outcomes on disk, from the moment a job returns until the daemon has recorded
them.

Each worker appends the outcome of every attempt it finishes to a file of its own in the
locks directory, `.worker-PID-SEQ.outcome`, before it removes the attempt's lock file and
reports, so a daemon killed in between does not lose a finished run: recovery finds the
record by (job id, attempt) and records that outcome instead of counting the attempt
interrupted and running the job again. A record is one `write` to a file opened once:
nothing is created or removed per attempt.

A worker starts its next file once the current one holds `FILE_BYTES`. The files a worker
has moved past hold only reported attempts, so the daemon removes them once its next
commit is done (`superseded`, `files_of`), and all of a worker's files once the worker has
exited; recovery removes those of workers that are gone once no job they hold a record of
is still running elsewhere (a dead drainer's, which its settler reads). A record cut short
(its worker killed while writing) fails its checksum and ends the reading of that file;
the lock file, still there, then says the attempt was under way.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from bgjobd.locks import pid_alive
from bgjobd.worker.messages import AttemptDone

PREFIX: Final = ".worker-"
SUFFIX: Final = ".outcome"
FILE_BYTES: Final = 256 * 1024
"""A worker's file grows to about this before the worker starts another."""
_HEAD: Final = struct.Struct("<II")  # length of the body, CRC-32 of the body
_TIME: Final = struct.Struct("<d")  # the body: when the attempt ended, then the AttemptDone
_decode = msgspec.msgpack.Decoder(AttemptDone).decode
_encode = msgspec.msgpack.Encoder().encode


def path_of(directory: str, worker_pid: int, sequence: int) -> str:
    return f"{directory}/{PREFIX}{worker_pid}-{sequence}{SUFFIX}"


class Outcomes:
    """The worker's side: its records, appended to its current file."""

    def __init__(self, worker_pid: int) -> None:
        self._pid = worker_pid
        self._directory = ""
        self._fd = -1
        self._sequence = 0
        self._size = 0

    def keep(self, lock_path: str, done: AttemptDone) -> None:
        """Write the outcome down (in the lock file's directory). Never raises: without
        the record, a crash of the daemon at this moment counts the attempt as
        interrupted, as it did before outcomes were written down."""
        with contextlib.suppress(OSError, TypeError, ValueError, OverflowError):
            body = _TIME.pack(time.time()) + _encode(done)
            record = _HEAD.pack(len(body), zlib.crc32(body)) + body
            directory = lock_path.rpartition("/")[0]
            if self._fd < 0 or directory != self._directory:
                self._open(directory)
            written = os.write(self._fd, record)
            self._size += written
            if written < len(record) or self._size >= FILE_BYTES:
                self._next_file()  # a record cut short would hide the records after it

    def _open(self, directory: str) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path_of(directory, self._pid, self._sequence), flags, 0o600)
        self._directory = directory
        self._size = 0

    def _next_file(self) -> None:
        self.close()
        self._sequence += 1

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def files_of(directory: str, worker_pid: int) -> list[str]:
    """The worker's files, oldest first."""
    prefix = f"{PREFIX}{worker_pid}-"
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    sequences = sorted(
        int(number)
        for name in names
        if name.startswith(prefix)
        and name.endswith(SUFFIX)
        and (number := name[len(prefix) : -len(SUFFIX)]).isdigit()
    )
    return [path_of(directory, worker_pid, sequence) for sequence in sequences]


def superseded(directory: str, worker_pid: int) -> list[str]:
    """The worker's files but its newest: to be taken while the worker is between attempts
    (so the newest is the one it writes next), and removed after the daemon's next commit."""
    return files_of(directory, worker_pid)[:-1]


def remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass(frozen=True)
class Finished:
    """An attempt that ended, as its worker wrote it down."""

    done: AttemptDone
    finished_at: float
    """When the record was written: the attempt's end, give or take the write."""

    @property
    def started_at(self) -> float:
        return self.finished_at - self.done.duration


def read(path: Path) -> list[Finished]:
    """The file's records, up to the first one cut short or unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    records: list[Finished] = []
    offset = 0
    while offset + _HEAD.size <= len(data):
        length, checksum = _HEAD.unpack_from(data, offset)
        body = data[offset + _HEAD.size : offset + _HEAD.size + length]
        if length < _TIME.size or len(body) < length or zlib.crc32(body) != checksum:
            break
        try:
            done = _decode(body[_TIME.size :])
        except msgspec.DecodeError:
            break
        records.append(Finished(done, _TIME.unpack_from(body)[0]))
        offset += _HEAD.size + length
    return records


def _worker_files(locks_dir: Path) -> list[tuple[Path, int]]:
    found = []
    for path in locks_dir.glob(f"{PREFIX}*{SUFFIX}"):
        pid = path.name[len(PREFIX) :].partition("-")[0]
        if pid.isdigit():
            found.append((path, int(pid)))
    return found


def found(locks_dir: Path) -> dict[int, Finished]:
    """The latest outcome written down for each job, over every worker's files."""
    outcomes: dict[int, Finished] = {}
    for path, _pid in _worker_files(locks_dir):
        for record in read(path):
            known = outcomes.get(record.done.job_id)
            newer = known is None or (record.done.attempt, record.finished_at) > (
                known.done.attempt,
                known.finished_at,
            )
            if newer:
                outcomes[record.done.job_id] = record
    return outcomes


def left_behind(locks_dir: Path) -> list[tuple[Path, set[int]]]:
    """The files of workers that are gone, each with the ids of the jobs it has records of."""
    return [
        (path, {record.done.job_id for record in read(path)})
        for path, pid in _worker_files(locks_dir)
        if not pid_alive(pid)
    ]


def remove_settled(locks_dir: Path, job_ids: set[int]) -> None:
    """Remove the files of workers that are gone whose every record is of one of `job_ids`
    (their attempts just recorded and committed by the caller). Any other such file is
    left for the next daemon start's recovery, which knows the whole store."""
    for path, jobs in left_behind(locks_dir):
        if jobs <= job_ids:
            with contextlib.suppress(OSError):
                path.unlink()
