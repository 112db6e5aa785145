"""The ends of log files, read without loading whole files: logs grow without bound and a
job may print gigabytes, while the page needs the last few kilobytes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiofiles

from bgjobd.joblog import ERROR_LOG, MAIN_LOG

BLOCK: Final = 16 * 1024
MAX_LOG_BYTES: Final = 256 * 1024
"""At most this much of a log file is read for its last lines."""
MAX_OUTPUT_BYTES: Final = 64 * 1024
"""At most this much of a job's captured output is shown."""

_LINE = re.compile(
    r"^\[(?P<time>[^\]]*)\] \[(?P<status>[A-Z]+)\] (?P<label>\S+) - (?P<message>.*)$"
)


@dataclass(frozen=True)
class LogLine:
    time: str
    status: str
    label: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "status": self.status,
            "label": self.label,
            "message": self.message,
        }


def parse_line(raw: str) -> LogLine:
    match = _LINE.match(raw)
    if match is None:  # written by something else, or cut by the byte limit
        return LogLine(time="", status="", label="", message=raw)
    return LogLine(match["time"], match["status"], match["label"], match["message"])


async def read_end(path: Path, max_bytes: int) -> tuple[bytes, int]:
    """The last `max_bytes` of the file and how many bytes come before them; (b"", 0) when
    the file does not exist."""
    try:
        async with aiofiles.open(path, "rb") as handle:
            size = await handle.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            await handle.seek(start)
            return await handle.read(size - start), start
    except FileNotFoundError:
        return b"", 0


async def tail_lines(path: Path, count: int, *, max_bytes: int = MAX_LOG_BYTES) -> list[LogLine]:
    """The last `count` lines, newest first."""
    data, skipped = await read_end(path, max_bytes)
    data, _ = _from_whole_line(data, skipped)
    lines = data.decode("utf-8", "replace").splitlines()
    return [parse_line(line) for line in reversed(lines[-count:])]


async def tail_output(path: Path, *, max_bytes: int = MAX_OUTPUT_BYTES) -> dict[str, Any]:
    """A job's captured output: its end, and how much came before it."""
    exists = path.is_file()
    data, skipped = await read_end(path, max_bytes) if exists else (b"", 0)
    data, skipped = _from_whole_line(data, skipped)
    return {"exists": exists, "text": data.decode("utf-8", "replace"), "skipped_bytes": skipped}


def _from_whole_line(data: bytes, skipped: int) -> tuple[bytes, int]:
    """Drop the line that the byte limit cut in the middle (and count it as skipped)."""
    if not skipped:
        return data, skipped
    cut = data.find(b"\n")
    if cut < 0:
        return data, skipped
    return data[cut + 1 :], skipped + cut + 1


async def daemon_logs(logs_dir: Path, count: int) -> dict[str, list[dict[str, Any]]]:
    """The ends of the execution log and the error log, newest lines first."""
    return {
        "main": [line.as_json() for line in await tail_lines(logs_dir / MAIN_LOG, count)],
        "errors": [line.as_json() for line in await tail_lines(logs_dir / ERROR_LOG, count)],
    }
