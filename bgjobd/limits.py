"""An attempt's memory and open-file limits: set in the worker around each attempt, and the
errors that name an attempt that went over them.

Memory is limited by the worker's cgroup (`memory.max`, set by the daemon) where the host
gives one, else by `RLIMIT_AS` here: the job's allocations past the limit raise
MemoryError, which is reported as `MemoryLimitExceeded`. Open files by `RLIMIT_NOFILE`
(the worker's own few descriptors count too). Both are soft limits, inherited by processes
the job starts, and put back when the attempt ends.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Final

import msgspec

from bgjobd.worker.messages import AttemptDone, RunAttempt
from bgjobs.model import ErrorInfo
from bgjobs.sizes import format_size

MEMORY_LIMIT_EXCEEDED: Final = "MemoryLimitExceeded"
OPEN_FILES_LIMIT_EXCEEDED: Final = "OpenFilesLimitExceeded"


def memory_exceeded(limit: int, detail: str) -> ErrorInfo:
    return ErrorInfo(
        type=MEMORY_LIMIT_EXCEEDED,
        message=f"the job went over its memory limit of {format_size(limit)} ({detail})",
        hierarchy=[MEMORY_LIMIT_EXCEEDED, "MemoryError", "Exception", "BaseException"],
    )


def name_limit_errors(done: AttemptDone, request: RunAttempt) -> AttemptDone:
    """The attempt's report, with a MemoryError under a memory limit (or running out of
    descriptors under an open-file limit) named for the limit, so retry rules can say
    `[exceptions.MemoryLimitExceeded]`."""
    error = done.error
    if error is None:
        return done
    if request.memory_limit is not None and "MemoryError" in error.hierarchy:
        named = memory_exceeded(request.memory_limit, f"{error.type}: {error.message}".rstrip(": "))
    elif request.max_open_files is not None and _out_of_descriptors(error):
        named = ErrorInfo(
            type=OPEN_FILES_LIMIT_EXCEEDED,
            message=f"the job reached its limit of {request.max_open_files} open files "
            f"({error.message})",
            hierarchy=[OPEN_FILES_LIMIT_EXCEEDED, *error.hierarchy],
        )
    else:
        return done
    named = msgspec.structs.replace(named, traceback=error.traceback)
    return msgspec.structs.replace(done, error=named, directive=None, retry_delay=None)


def _out_of_descriptors(error: ErrorInfo) -> bool:
    return "OSError" in error.hierarchy and error.message.startswith(f"[Errno {errno.EMFILE}]")


_NO_LIMITS: Final = contextlib.nullcontext()


def applied(memory: int | None, open_files: int | None) -> contextlib.AbstractContextManager[None]:
    """Lower the soft limits for the attempt (never above the hard ones), then restore."""
    if memory is None and open_files is None:
        return _NO_LIMITS  # most attempts: no generator to run
    return _lowered(memory, open_files)


@contextlib.contextmanager
def _lowered(memory: int | None, open_files: int | None) -> Iterator[None]:
    try:
        import resource
    except ImportError:  # not on Windows
        yield
        return
    saved: list[tuple[int, tuple[int, int]]] = []
    try:
        for kind, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_NOFILE, open_files)):
            if value is None:
                continue
            soft, hard = resource.getrlimit(kind)
            saved.append((kind, (soft, hard)))
            resource.setrlimit(kind, (value if hard < 0 else min(value, hard), hard))
        yield
    finally:
        for kind, previous in reversed(saved):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(kind, previous)
