"""Capturing what a job prints into `logs/jobs/<id>.log`, up to `max_output_bytes`.

During an attempt the worker's file descriptors 1 and 2 are the write end of a pipe, so
anything the job or a process it starts prints goes through it. A thread of the worker
(`_Drain`) reads the pipe: the first half of the limit goes straight into a scratch file of
the worker's own, the last half is kept in memory, and whatever lies between is only
counted. When the attempt ends (also when SIGTERM unwinds it), the tail follows in the file
after a line saying how much was cut, and a scratch file with something in it becomes the
job's output file (renamed); an empty one is simply used again, so a job that prints nothing
leaves no file. If the daemon has to kill a worker mid-attempt, it moves the scratch file in
the same way (`salvage`): the head is kept; the tail, which lived in the worker's memory, is
lost with a SIGKILL, and a line says so.

Neither the disk nor memory ever holds more than the limit (the tail buffer briefly twice
its half), however much a job prints.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from pathlib import Path
from typing import Final

from bgjobs.outputs import scratch_path
from bgjobs.sizes import format_size

_CHUNK: Final = 1 << 16


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
    """One attempt's output: reads the pipe into the scratch file, head and tail."""

    def __init__(self, read_fd: int, sink_fd: int, limit: int | None) -> None:
        self.read_fd = read_fd
        self._sink_fd = sink_fd
        self._head_room = head_size(limit)
        self._tail_size = limit // 2 if limit is not None else 0
        self._tail = bytearray()
        self._cut = 0
        self.stopping = False
        self.done = threading.Event()

    def take(self, data: bytes) -> None:
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


class _Reader(threading.Thread):
    """The worker's one output thread: drains each attempt's pipe until the pipe reaches
    end-of-file or the attempt ends (`stop`), whichever is first; a process the job left
    behind may still hold the pipe open."""

    def __init__(self) -> None:
        super().__init__(name="output", daemon=True)
        self._wake_read, self._wake_write = os.pipe()
        self._next: list[_Drain] = []
        self._ready = threading.Condition()

    def start_draining(self, drain: _Drain) -> None:
        with self._ready:
            self._next.append(drain)
            self._ready.notify()

    def stop(self, drain: _Drain) -> None:
        """Finish `drain` (reading what is in the pipe now) and wait until it is written."""
        drain.stopping = True
        os.write(self._wake_write, b".")
        drain.done.wait()

    def run(self) -> None:
        while True:
            with self._ready:
                while not self._next:
                    self._ready.wait()
                drain = self._next.pop(0)
            try:
                self._pump(drain)
                drain.finish()
            except Exception:  # noqa: BLE001, S110  # lose this output, never the thread
                pass
            finally:
                os.close(drain.read_fd)
                drain.done.set()

    def _pump(self, drain: _Drain) -> None:
        poller = select.poll()
        poller.register(drain.read_fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        while True:
            for fd, _event in poller.poll():
                if fd == self._wake_read:
                    os.read(self._wake_read, 4096)  # a stale wake-up is read and ignored
                    continue
                data = os.read(drain.read_fd, _CHUNK)
                if not data:
                    return
                drain.take(data)
            if drain.stopping:
                self._read_rest(drain)
                return

    @staticmethod
    def _read_rest(drain: _Drain) -> None:
        """What is already in the pipe belongs to the attempt; later writes do not."""
        os.set_blocking(drain.read_fd, False)
        with contextlib.suppress(BlockingIOError):
            while data := os.read(drain.read_fd, _CHUNK):
                drain.take(data)


class Output:
    """The worker's side: fds 1 and 2 on the attempt's pipe during an attempt, on /dev/null
    between attempts."""

    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._scratch: Path | None = None
        self._fd = -1
        self._target: Path | None = None
        self._drain: _Drain | None = None
        self._reader: _Reader | None = None

    def capture(self, target: str, max_bytes: int | None = None) -> None:
        """Send fds 1 and 2 to `target`'s scratch file, keeping at most `max_bytes` (the
        head and the tail) of what arrives."""
        self._flush()
        self._target = Path(target)
        scratch = scratch_path(self._target.parent, os.getpid())
        if scratch != self._scratch:  # first attempt, or the storage moved (a reload)
            self.close()
            self._open(scratch)
        if self._reader is None:
            self._reader = _Reader()
            self._reader.start()
        read_fd, write_fd = os.pipe()
        self._drain = _Drain(read_fd, self._fd, max_bytes)
        self._reader.start_draining(self._drain)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)

    def release(self) -> None:
        self._flush()
        os.dup2(self._devnull, 1)
        os.dup2(self._devnull, 2)
        if self._drain is not None and self._reader is not None:
            # Forgotten only once written: a SIGTERM during the wait calls release again.
            self._reader.stop(self._drain)
        self._drain = None
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
