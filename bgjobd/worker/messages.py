"""Messages between the daemon and a worker process, over two pipes.

They use the framing of `bgjobs.protocol` (4-byte length, msgpack body); this module only
names the messages, which never leave the machine or the daemon's own process tree.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from bgjobs.model import ErrorInfo


class Setup(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """First message to a worker: what it may run and where to find it."""

    jobs_package: str
    base_dir: str
    """Put first on sys.path, so the jobs package next to the configuration imports."""
    allowed_jobs: dict[str, list[str]]
    tracing: bool = False
    """Each attempt is an OpenTelemetry span (`[tracing] enabled`)."""
    tracing_setup: str | None = None
    """`module:function` the worker calls once to set tracing up; None: OTLP from the
    `OTEL_*` environment variables (see `bgjobd.worker.tracing`)."""


class RunAttempt(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    job_id: int
    attempt: int
    class_name: str
    method: str
    params: list[Any]
    output_path: str
    lock_path: str
    """The worker creates this lock file before the job runs and removes it after (the
    daemon removes it when it had to kill the worker)."""
    owner: str
    memory_limit: int | None = None
    """Bytes; None: unlimited (see `bgjobs.config.AttemptLimits`)."""
    max_output_bytes: int | None = None
    max_open_files: int | None = None
    max_result_bytes: int | None = None
    trace: dict[str, str] | None = None
    """The submitter's W3C trace context: the parent of the attempt's span."""


class Ready(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    pid: int
    import_error: ErrorInfo | None = None
    """Set when the jobs package failed to import; every attempt then fails with it."""


class Started(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """The lock file exists and the job is being called."""

    job_id: int
    output_offset: int = 0
    """The size of the job's output file before this attempt: where its output will start
    (the daemon reads the end of it from there if it has to kill the worker)."""


class AttemptDone(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    job_id: int
    attempt: int
    duration: float
    result: Any = None
    error: ErrorInfo | None = None
    directive: Literal["retry", "fail"] | None = None
    """Set when the job raised `bgjobs.Retry` or `bgjobs.Fail`."""
    retry_delay: float | None = None
    note: str | None = None
    """A warning about the attempt, e.g. a result that had to be stored as its repr."""
    output_tail: bytes | None = None
    """The end of what the attempt printed (`bgjobd.capture.STORED_TAIL_BYTES` at most);
    None when it printed nothing."""
    output_bytes: int = 0
    """The size of all it printed (as its output file holds it)."""


class Progress(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """The job called `bgjobs.progress` (thinned by the worker to about ten a second)."""

    job_id: int
    attempt: int
    fraction: float
    message: str | None = None


TEMPLATE_MESSAGE_BYTES: Final = 64 * 1024
"""The largest message on the template's socket (a `Setup` with a long allow-list)."""


class TemplateReady(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """The template process has imported what its workers share (see
    `bgjobd.worker.template`)."""

    pid: int
    imported: bool
    """The jobs package was imported (not with tracing on, nor when its import failed: then
    each worker imports it itself, and reports the error as a fresh one does)."""
    threads: int
    """Threads running in the template after the import: more than one means the jobs
    package started some, which a forked worker does not have."""


class Forked(msgspec.Struct, tag=True, frozen=True, kw_only=True):
    """A worker forked by the template; pid 0 if the fork failed (with why)."""

    pid: int
    error: str | None = None


ToWorker = Setup | RunAttempt
FromWorker = Ready | Started | AttemptDone | Progress
FromTemplate = TemplateReady | Forked
