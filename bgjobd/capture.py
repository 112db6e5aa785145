"""Capturing what a job prints into `logs/jobs/<id>.log`, up to `max_output_bytes`.

During an attempt the worker's file descriptors 1 and 2 are the write end of a pipe, so
anything the job or a process it starts prints goes through it. A thread of the worker
(`_Reader`) reads the pipe: the first half of the limit goes straight into a scratch file of
the worker's own, the last half is kept in memory, and whatever lies between is only
counted. When the attempt ends (also when SIGTERM unwinds it), the tail follows in the file
after a line saying how much was cut, and a scratch file with something in it becomes the
job's output file (renamed); an empty one is simply used again, so a job that prints nothing
leaves no file (and costs no wake-up of the thread). If the daemon has to kill a worker
mid-attempt, it moves the scratch file in the same way (`salvage`): the head is kept; the
tail, which lived in the worker's memory, is lost with a SIGKILL, and a line says so.

Neither the disk nor memory ever holds more than the limit (the tail buffer briefly twice
its half), however much a job prints.

The end of each attempt's output (`STORED_TAIL_BYTES`) also goes to the store with the
attempt, so that a node without the file can show it: the worker reads it back from the
scratch file before moving it and reports it with the attempt's outcome (`Printed`); for an
attempt whose worker was killed, the daemon reads it from the job's file (`tail_of`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bgjobs.outputs import scratch_path
from bgjobs.sizes import format_size

_CHUNK: Final = 1 << 16
STORED_TAIL_BYTES: Final = 64 * 1024
"""How much of the end of each attempt's output the store keeps."""


@dataclass(frozen=True)
class Printed:
    """What an attempt printed, for the store: its end and its whole size."""

    tail: bytes
    size: int


def tail_of(path: Path, start: int) -> Printed | None:
    """The end of what a file holds past `start` (an attempt's output appended to the job's
    file); None when that is nothing."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END) - start
            if size <= 0:
                return None
            handle.seek(start + size - min(size, STORED_TAIL_BYTES))
            return Printed(handle.read(STORED_TAIL_BYTES), size)
    except OSError:
        return None


def keep(scratch: Path, target: Path) -> None:
    """Make the scratch file's contents the job's output (after any earlier attempt's)."""
    if target.exists():
        with scratch.open("rb") as source, target.open("ab") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        scratch.unlink()
    else:
        scratch.rename(target)


def salvage(
    directory: Path, worker_pid: int, target: Path, *, tail_lost_after: int | None = None
) -> None:
    """After killing a worker mid-attempt: keep what its job printed, drop the rest. With
    `tail_lost_after` (the head's size, when the worker could not write its tail), a head
    that filled up is followed by a line saying that the rest was lost."""
    scratch = scratch_path(directory, worker_pid)
    with contextlib.suppress(FileNotFoundError):
        size = scratch.stat().st_size
        if not size:
            scratch.unlink()
            return
        if tail_lost_after is not None and size >= tail_lost_after:
            with contextlib.suppress(OSError), scratch.open("ab") as sink:
                sink.write(LOST_MARKER)
        keep(scratch, target)


LOST_MARKER: Final = b"\n[... the rest was lost: the worker was killed ...]\n"


def head_size(limit: int | None) -> int | None:
    """How much of an attempt's output goes to the file at once (the rest is the tail)."""
    return None if limit is None else limit - limit // 2


def cut_marker(cut: int) -> bytes:
    return f"\n[... {format_size(cut)} cut ...]\n".encode()


class _Drain:
    """One attempt's output: what the reader takes from the pipe goes into the scratch
    file, head and tail."""

    def __init__(self, sink_fd: int, limit: int | None) -> None:
        self._sink_fd = sink_fd
        self._head_room = head_size(limit)
        self._tail_size = limit // 2 if limit is not None else 0
        self._tail = bytearray()
        self._cut = 0
        self.taken = 0
        self.stopping = False
        self.finished = False
        """Written and detached from the pipe (set under the reader's lock)."""

    @property
    def settled(self) -> bool:
        """Everything taken is in the file already: nothing is left to write at the end."""
        return not self._tail and not self._cut

    def take(self, data: bytes) -> None:
        self.taken += len(data)
        if self._head_room is None:
            self._write(data)
            return
        if self._head_room > 0:
            head, data = data[: self._head_room], data[self._head_room :]
            self._head_room -= len(head)
            self._write(head)
        if not data:
            return
        self._tail += data
        if len(self._tail) > 2 * self._tail_size:  # trimmed in batches, not per chunk
            self._trim()

    def finish(self) -> None:
        """Write what was cut and the tail after the head."""
        self._trim()
        if self._cut:
            self._write(cut_marker(self._cut))
        self._write(bytes(self._tail))
        self._tail.clear()

    def _trim(self) -> None:
        excess = len(self._tail) - self._tail_size
        if excess > 0:
            self._cut += excess
            del self._tail[:excess]

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._sink_fd, view)
            except OSError:
                return  # a full disk: the output is lost, the job goes on
            view = view[written:]


def _pending(fd: int) -> int:
    """Bytes waiting in the pipe."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)


class _Reader(threading.Thread):
    """The worker's one output thread, reading the worker's one output pipe for as long as
    the worker lives: into the current attempt's drain, or nowhere between attempts.

    The pipe and the thread outlive attempts so that an attempt costs the thread nothing
    when the job prints little: `capture` only names the drain, and `stop` reads what is
    left in the pipe itself and detaches the drain on the caller's thread. Only an attempt
    whose output went past the head (a tail to write) wakes the thread to finish it.
    Everything that touches the pipe or the current drain holds `lock`."""

    def __init__(self, read_fd: int) -> None:
        super().__init__(name="output", daemon=True)
        self._read_fd = read_fd
        self._wake_read, self._wake_write = os.pipe()
        self._poller = select.poll()
        self._poller.register(read_fd, select.POLLIN)
        self._poller.register(self._wake_read, select.POLLIN)
        self.lock = threading.Lock()
        self._current: _Drain | None = None
        self._finished = threading.Event()
        """Set by the thread when it has finished the drain `stop` handed it."""

    def start_draining(self, drain: _Drain) -> None:
        with self.lock:
            # Whatever a process of an earlier attempt wrote late is not this attempt's.
            self._read(None, _pending(self._read_fd))
            self._current = drain

    def stop(self, drain: _Drain) -> None:
        """Finish `drain` (with what is in the pipe now) and return once it is written."""
        with self.lock:
            if drain.finished:
                return
            pending = _pending(self._read_fd)
            if pending and not drain.stopping:
                # The last few lines, read here rather than by waking the thread for them.
                with contextlib.suppress(OSError):
                    self._read(drain, pending)
            if drain.settled:
                self._current = None  # the common case: the thread need not wake at all
                drain.finished = True
                return
            drain.stopping = True
            self._finished.clear()
        os.write(self._wake_write, b".")
        while not drain.finished:
            self._finished.wait()

    def run(self) -> None:
        while True:
            for fd, _event in self._poller.poll():
                if fd == self._wake_read:
                    os.read(self._wake_read, 4096)  # a stale wake-up is read and ignored
            with self.lock:
                drain = self._current
                try:
                    if drain is not None and drain.stopping:
                        # What is already in the pipe belongs to the attempt; later writes
                        # (a process it left behind) do not.
                        self._read(drain, _pending(self._read_fd))
                        drain.finish()
                    else:
                        self._read(drain, _BURST)
                except Exception:  # noqa: BLE001  # lose this output, never the thread
                    if drain is not None:
                        drain.stopping = True
                if drain is not None and drain.stopping:
                    self._current = None
                    drain.finished = True
                    self._finished.set()

    def _read(self, drain: _Drain | None, limit: int) -> None:
        """Up to `limit` bytes from the pipe into `drain` (None: dropped). Bounded, so that
        a process that never stops printing cannot keep the lock from `stop`."""
        while limit > 0:
            try:
                data = os.read(self._read_fd, min(limit, _CHUNK))
            except BlockingIOError:
                return
            if not data:
                return
            limit -= len(data)
            if drain is not None:
                drain.take(data)


_BURST: Final = 16 * _CHUNK
"""At most this much is read while holding the lock, between two polls."""


class Output:
    """The worker's side: fds 1 and 2 on the output pipe during an attempt, on /dev/null
    between attempts."""

    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._scratch: str | None = None
        self._directory = ""
        self._fd = -1
        self._target: str | None = None
        self._drain: _Drain | None = None
        self._reader: _Reader | None = None
        self._write_fd = -1

    def capture(self, target: str, max_bytes: int | None = None) -> None:
        """Send fds 1 and 2 to `target`'s scratch file, keeping at most `max_bytes` (the
        head and the tail) of what arrives."""
        self._flush()
        self._target = target
        directory = target.rpartition("/")[0]
        if directory != self._directory:  # first attempt, or the storage moved (a reload)
            self.close()
            self._open(str(scratch_path(Path(directory), os.getpid())))
            self._directory = directory
        if self._reader is None:
            read_fd, self._write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            self._reader = _Reader(read_fd)
            self._reader.start()
        self._drain = _Drain(self._fd, max_bytes)
        self._reader.start_draining(self._drain)
        os.dup2(self._write_fd, 1)
        os.dup2(self._write_fd, 2)

    def release(self) -> Printed | None:
        """fds 1 and 2 back on /dev/null; the attempt's output into the job's file.
        Returns what the attempt printed (None: nothing)."""
        self._flush()
        os.dup2(self._devnull, 1)
        os.dup2(self._devnull, 2)
        drain = self._drain
        if drain is not None and self._reader is not None:
            # Forgotten only once written: a SIGTERM during the wait calls release again.
            self._reader.stop(drain)
        self._drain = None
        if self._target is None or self._scratch is None:
            return None
        printed = None
        if drain is not None and drain.taken:
            size = os.fstat(self._fd).st_size
            if size:
                # Read back while it is still in the page cache: one pread, no more.
                length = min(size, STORED_TAIL_BYTES)
                with contextlib.suppress(OSError):
                    printed = Printed(os.pread(self._fd, length, size - length), size)
                os.close(self._fd)
                self._fd = -1
                keep(Path(self._scratch), Path(self._target))
                self._open(self._scratch)
        self._target = None
        return printed

    def close(self) -> None:
        if self._scratch is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._scratch)

    def _open(self, scratch: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        os.makedirs(os.path.dirname(scratch), exist_ok=True)
        # Read as well as written: `release` reads the attempt's tail back.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(scratch, flags, 0o644)
        self._scratch = scratch

    @staticmethod
    def _flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
