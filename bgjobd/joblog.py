"""The two log files the original promised, in its line format.

`[YYYY-MM-DD HH:MM:SS] [STATUS] Class::method - message`, times in UTC. ERROR, SECURITY and
WARNING lines go to `background_jobs_errors.log`, the rest to `background_jobs.log`. Each
line is one `write` on an O_APPEND descriptor, so several processes share the files safely.
Control, C1 and bidi characters are escaped (`bgjobs.text`), so no parameter or message can
forge a line or act on a terminal that shows the file; a line is capped at `MAX_LINE`
characters (the label at `MAX_LABEL`), saying how much was cut.

With `[logging] format = "jsonl"` (or `"both"`, beside the text files) the same lines go to
`background_jobs.jsonl` as JSON objects, one per line and one `write` each, whatever their
status: `time` (ISO 8601, UTC, milliseconds), `status`, `class` and `method` (null for the
daemon's own lines), `job_id`, `attempt` and `max_attempts` (read from the message's
`job N attempt A/M` tag; null when it has none), and `message`, escaped and capped as in
the text line.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from bgjobs.settings import LogFormat
from bgjobs.text import cap, escape_controls

MAIN_LOG: Final = "background_jobs.log"
ERROR_LOG: Final = "background_jobs_errors.log"
JSONL_LOG: Final = "background_jobs.jsonl"
NO_JOB: Final = "N/A::N/A"
_ROTATION_CHECK_SECONDS: Final = 1.0
HELD_LINES_MAX: Final = 4096
"""Held lines (`JobLog.batched`) are written once this many wait: a bound on memory."""
_PARAMS_SHOWN: Final = 200
MAX_LINE: Final = 16 * 1024
"""Characters of a line's label and message together, after escaping."""
MAX_LABEL: Final = 512
"""Characters of the `Class::method` label (a refused class name may be anything)."""


class Status(enum.StrEnum):
    INFO = "INFO"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    SECURITY = "SECURITY"
    WARNING = "WARNING"


_TO_ERROR_LOG = frozenset({Status.ERROR, Status.SECURITY, Status.WARNING})


def escape(text: str) -> str:
    """Make text safe for one log line: every control, bidi or line-breaking character
    escaped."""
    return escape_controls(text)


def describe_params(params: list[Any]) -> str:
    text = msgspec.json.encode(params).decode()
    return text if len(text) <= _PARAMS_SHOWN else text[:_PARAMS_SHOWN] + "…"


@functools.lru_cache(maxsize=4)
def _stamp(second: int) -> str:
    # Lines come thousands a second: each second is formatted once.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))


def format_line(status: Status, label: str, message: str, now: float | None = None) -> str:
    stamp = _stamp(int(time.time() if now is None else now))
    shown = cap(escape(label), MAX_LABEL)
    return f"[{stamp}] [{status}] {shown} - {cap(escape(message), MAX_LINE - len(shown))}\n"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


_TAG: Final = re.compile(r"job (\d+)(?: attempt (\d+)/(\d+))?\b")
"""The tag messages about a job start with (`attempts.job_tag`, or just `job N`)."""


def _number(text: str | None) -> int | None:
    return None if text is None else int(text)


def format_json_line(status: Status, label: str, message: str, now: float | None = None) -> bytes:
    """The line as one JSON object (see the module's docstring), newline included."""
    now = time.time() if now is None else now
    second = int(now)
    shown = cap(escape(label), MAX_LABEL)
    class_name: str | None = label
    method: str | None = None
    if label == NO_JOB:
        class_name = None
    elif "::" in label:
        class_name, method = label.split("::", 1)
    tag = _TAG.match(message)
    record = {
        "time": f"{_iso_second(second)}.{int((now - second) * 1000):03d}Z",
        "status": status.value,
        "class": None if class_name is None else cap(escape(class_name), MAX_LABEL),
        "method": None if method is None else cap(escape(method), MAX_LABEL),
        "job_id": _number(tag.group(1)) if tag else None,
        "attempt": _number(tag.group(2)) if tag else None,
        "max_attempts": _number(tag.group(3)) if tag else None,
        "message": cap(escape(message), MAX_LINE - len(shown)),
    }
    return msgspec.json.encode(record) + b"\n"


class _AppendFile:
    """An O_APPEND file that notices when it was rotated away and opens the new one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._checked_at = 0.0
        self._held: list[bytes] | None = None
        self.lost_lines = 0
        """Lines that could not be written (a full disk, say)."""
        self.reopen()

    def reopen(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)
        self._checked_at = time.monotonic()

    def write(self, data: bytes) -> None:
        """Append one line (held while `hold` is on). Never raises: a full disk or a
        vanished directory must not turn the daemon's report of a failure into a failure
        of its own."""
        if self._held is not None:
            self._held.append(data)
            if len(self._held) >= HELD_LINES_MAX:
                self._write_held()
            return
        self._append(data, 1)

    def hold(self) -> None:
        """Keep the lines written from now on until `release`, to write them at once."""
        if self._held is None:
            self._held = []

    def release(self) -> None:
        self._write_held()
        self._held = None

    def _write_held(self) -> None:
        if self._held:
            self._append(b"".join(self._held), len(self._held))
            self._held = []

    def _append(self, data: bytes, lines: int) -> None:
        try:
            now = time.monotonic()
            if now - self._checked_at > _ROTATION_CHECK_SECONDS:
                self._checked_at = now
                if self._was_rotated():
                    self.reopen()
            written = os.write(self._fd, data)
            if written < len(data):  # a disk filling up: what did not fit is lost
                self.lost_lines += data.count(b"\n", written)
        except OSError:
            self.lost_lines += lines

    def _was_rotated(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        open_file = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) != (open_file.st_dev, open_file.st_ino)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JobLog:
    """Writes the execution log and the error log under one directory, and/or the JSON
    lines (`log_format`)."""

    def __init__(self, logs_dir: Path, log_format: LogFormat = "text") -> None:
        self._logs_dir = logs_dir
        self._text: tuple[_AppendFile, _AppendFile] | None = None
        self._jsonl: _AppendFile | None = None
        self._batching = False
        self.set_format(log_format)

    def set_format(self, log_format: LogFormat) -> None:
        """Which files get the lines from now on (a reload may change it)."""
        wants_text = log_format in ("text", "both")
        wants_jsonl = log_format in ("jsonl", "both")
        if wants_text and self._text is None:
            self._text = (
                _AppendFile(self._logs_dir / MAIN_LOG),
                _AppendFile(self._logs_dir / ERROR_LOG),
            )
        elif not wants_text and self._text is not None:
            for file in self._text:
                file.close()
            self._text = None
        if wants_jsonl and self._jsonl is None:
            self._jsonl = _AppendFile(self._logs_dir / JSONL_LOG)
        elif not wants_jsonl and self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def write(self, status: Status, label: str, message: str) -> None:
        now = time.time()
        if self._text is not None:
            main, errors = self._text
            target = errors if status in _TO_ERROR_LOG else main
            line = format_line(status, label, message, now)
            target.write(line.encode("utf-8", "backslashreplace"))
        if self._jsonl is not None:
            self._jsonl.write(format_json_line(status, label, message, now))

    def info(self, label: str, message: str) -> None:
        self.write(Status.INFO, label, message)

    def success(self, label: str, message: str) -> None:
        self.write(Status.SUCCESS, label, message)

    def error(self, label: str, message: str) -> None:
        self.write(Status.ERROR, label, message)

    def warning(self, label: str, message: str) -> None:
        self.write(Status.WARNING, label, message)

    def security(self, label: str, message: str) -> None:
        self.write(Status.SECURITY, label, message)

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """The lines written inside go to each file in one write, at the end (a bulk
        submit's thousand lines: one system call, not a thousand). Inside another, it
        changes nothing: the outer one writes them."""
        if self._batching:
            yield
            return
        self._batching = True
        files = self._files()
        for file in files:
            file.hold()
        try:
            yield
        finally:
            self._batching = False
            for file in files:
                file.release()

    def _files(self) -> list[_AppendFile]:
        return [*(self._text or ()), *([self._jsonl] if self._jsonl else [])]

    def reopen(self) -> None:
        """After rotation by logrotate (SIGHUP): start writing to fresh files."""
        for file in self._files():
            file.reopen()

    def close(self) -> None:
        for file in self._files():
            file.close()
