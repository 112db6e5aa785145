"""The error hierarchy every part of bgjobs raises, and the exit code each one means."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgjobs.model import JobInfo
    from bgjobs.protocol import ErrorCode


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    """The job failed after all its attempts, or the daemon could not do what was asked."""
    USAGE = 2
    """Bad arguments, bad parameters or a bad configuration."""
    REFUSED = 3
    """The job is not allow-listed."""
    UNREACHABLE = 4
    """No daemon answers on the socket."""


class BgjobsError(Exception):
    """Base of every error bgjobs raises on purpose."""

    exit_code = ExitCode.FAILED


class ConfigError(BgjobsError):
    """The configuration is invalid; the message names the key and the reason."""

    exit_code = ExitCode.USAGE


class UsageError(BgjobsError):
    exit_code = ExitCode.USAGE


class RefusedError(BgjobsError):
    """A (class, method) pair that the allow-list does not name."""

    exit_code = ExitCode.REFUSED


class DaemonUnreachable(BgjobsError):
    exit_code = ExitCode.UNREACHABLE


class ProtocolError(BgjobsError):
    """The other side broke the protocol (garbage, a wrong version, a bad token)."""


class RequestFailed(BgjobsError):
    """The daemon answered a request with an error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotFound(RequestFailed):
    pass


class InvalidState(RequestFailed):
    pass


class BadParams(RequestFailed):
    exit_code = ExitCode.USAGE


class TooLarge(BadParams):
    """Params (or a record) larger than the configured limit; nothing was stored."""


class StoreFull(RequestFailed):
    """The store's disk is full; nothing was stored. Try again once space is freed."""


class StoreUnavailable(RequestFailed):
    """The store cannot be reached or was lost; nothing was stored."""


class JobFailed(BgjobsError):
    """A job that was waited for ended failed or cancelled; `job` holds its record."""

    def __init__(self, job: JobInfo) -> None:
        detail = job.error.summary() if job.error else (job.reason or job.state.value)
        super().__init__(f"job {job.id} ({job.label}) {job.state.value}: {detail}")
        self.job = job


class JobCancelled(JobFailed):
    pass
