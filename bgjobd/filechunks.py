"""Bounded reads of files that grow (a job's output, the log files) for `GetOutput` and
`GetLog`: from an offset, or from the start of the last N lines, at most so many bytes at a
time. Blocking reads: the handlers run them on a thread, as a file may be large and the
disk slow, and never read more than one chunk (and one block at a time while looking for
lines) into memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_BLOCK: Final = 64 * 1024


@dataclass(frozen=True)
class Chunk:
    data: bytes
    offset: int
    """Where `data` starts."""
    size: int
    """How long the file (or stream) was when read."""

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)

    @property
    def more(self) -> bool:
        return self.next_offset < self.size


def read_file(
    path: Path, offset: int, lines: int, max_bytes: int, *, restart: bool = False
) -> Chunk | None:
    """Up to `max_bytes` of the file from `offset` (from the start of its last `lines`
    lines when `lines` > 0). A file shorter than `offset` gives nothing, or with `restart`
    (a log, which may have been rotated) its beginning. None when there is no such file."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            fd = handle.fileno()
            start = _start(
                lambda at, length: os.pread(fd, length, at), size, offset, lines, restart
            )
            return Chunk(os.pread(fd, max(0, min(max_bytes, size - start)), start), start, size)
    except FileNotFoundError:
        return None


def read_bytes(data: bytes, offset: int, lines: int, max_bytes: int) -> Chunk:
    """`read_file` on bytes in memory."""
    start = _start(lambda at, length: data[at : at + length], len(data), offset, lines, False)
    return Chunk(data[start : start + max_bytes], start, len(data))


def read_from(path: Path, offset: int, max_bytes: int) -> bytes:
    """Up to `max_bytes` from `offset`; nothing when the file cannot be read (gone, or
    another user's)."""
    try:
        with path.open("rb") as handle:
            return os.pread(handle.fileno(), max_bytes, offset)
    except OSError:
        return b""


def _start(
    read: Callable[[int, int], bytes], size: int, offset: int, lines: int, restart: bool
) -> int:
    if lines > 0:
        return last_lines_start(read, size, lines)
    return 0 if restart and offset > size else offset


def last_lines_start(read: Callable[[int, int], bytes], size: int, lines: int) -> int:
    """Where the last `lines` lines start: just after the (lines + 1)-th newline from the
    end, counting the one that ends the last line; 0 when there are fewer. Read backwards a
    block at a time."""
    needed = lines + 1
    position = size
    while position > 0:
        step = min(_BLOCK, position)
        position -= step
        block = read(position, step)
        end = len(block)
        while (found := block.rfind(b"\n", 0, end)) >= 0:
            needed -= 1
            if not needed:
                return position + found + 1
            end = found
    return 0
