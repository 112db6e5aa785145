"""`run_background_job()`: hand a job to the daemon from application code and return at once.

    from bgjobctl import run_background_job
    handle = run_background_job("LessonCreatedService", "handle", ["English Grammar 101"])
    handle.id        # the job's id (None when it fell back to a detached run_job.py)
    handle.wait(10)  # its result, or JobFailed carrying the job's error

One connection per process is reused, safely across threads and after fork. When no daemon
answers, the job runs in a detached `run_job.py` (fallback="spawn", the default) so the
caller never blocks and the job is not lost; fallback="error" raises DaemonUnreachable.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from bgjobctl.address import resolve_address
from bgjobctl.client import DEFAULT_TIMEOUT, Client
from bgjobctl.fallback import spawn_detached
from bgjobs.config import CONFIG_ENV, SOCKET_ENV
from bgjobs.errors import DaemonUnreachable, JobCancelled, JobFailed, TooLarge, UsageError
from bgjobs.model import (
    MAX_BATCH_JOBS,
    MAX_KEY_LENGTH,
    ChainLink,
    JobInfo,
    JobSpec,
    JobState,
    Priority,
)
from bgjobs.params import check_encodable
from bgjobs.protocol import MAX_FRAME_BYTES, ErrorCode
from bgjobs.sizes import format_size
from bgjobs.times import delay_problem, run_at_problem
from bgjobs.tracing import current_trace

Fallback = Literal["spawn", "error"]
LinkSpec = tuple[str, str] | tuple[str, str, Sequence[Any]]


@dataclass
class JobHandle:
    """A submitted job (or chain): its id, and a way to wait for its result."""

    id: int | None
    last_id: int | None = None
    """The last link's id, for a chain; the job's own id otherwise."""
    client: Client | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    """The detached run_job.py, when the daemon was unreachable."""

    def job(self) -> JobInfo:
        """The job's current record (the first link's, for a chain)."""
        if self.client is None or self.id is None:
            raise UsageError("this job runs in a detached run_job.py; the daemon has no record")
        return self.client.get(self.id)

    def wait(self, timeout: float | None = None) -> Any:
        """The result of the job (of the chain's last link); raises JobFailed (or
        JobCancelled) if it did not succeed, TimeoutError after `timeout` seconds."""
        if self.client is None or self.last_id is None:
            return self._wait_detached(timeout)
        job = self.client.wait(self.last_id, timeout)
        return result_of(job)

    def _wait_detached(self, timeout: float | None) -> None:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"run_job.py did not finish within {timeout}s") from None
        if code != 0:
            raise RuntimeError(f"the job failed in run_job.py (exit code {code})")


def result_of(job: JobInfo) -> Any:
    if job.state is JobState.SUCCEEDED:
        return job.result
    if job.state is JobState.CANCELLED:
        raise JobCancelled(job)
    raise JobFailed(job)


def make_spec(
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    key: str | None = None,
) -> JobSpec:
    """The spec of one submit, with a fresh idempotency key unless one is given (e.g. one
    derived from the caller's own request id, so that its retries are the same job), and
    the trace context of the caller's current OpenTelemetry span, if any."""
    if at is not None and at.tzinfo is None:
        raise UsageError("at= must be a timezone-aware datetime")
    problem = run_at_problem(at) if at is not None else delay_problem(delay)
    if problem:
        raise UsageError(f"{'at' if at is not None else 'delay'} {problem}")
    if isinstance(params, str | bytes):
        raise UsageError("params must be a list of values, not a single string")
    values = list(params)
    check_encodable(values)
    links = [_link(link) for link in then]
    try:
        chosen = Priority(priority) if priority is not None else None
    except ValueError:
        raise UsageError(f"priority must be high, medium or low, not {priority!r}") from None
    spec = JobSpec(
        class_name=class_name,
        method=method,
        params=values,
        priority=chosen,
        delay=float(delay),
        run_at=at,
        then=links,
        key=new_key() if key is None else _checked_key(key),
        trace=current_trace(),
    )
    _check_sendable(spec)
    return spec


def _check_sendable(spec: JobSpec) -> None:
    """Refuse at once a job too large for any request (the daemon's `max_params_bytes`,
    which it checks, is lower still): sent, it would only get the connection closed."""
    size = len(msgspec.msgpack.encode(spec))
    if size > MAX_FRAME_BYTES:
        raise TooLarge(
            ErrorCode.TOO_LARGE,
            f"the job's params are {format_size(size)}, over the "
            f"{format_size(MAX_FRAME_BYTES)} a request carries",
        )


def new_key() -> str:
    """A random idempotency key (128 bits, as a uuid4 has)."""
    return os.urandom(16).hex()


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise UsageError(f"key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    return key


def _link(link: LinkSpec) -> ChainLink:
    if len(link) == 2:
        return ChainLink(link[0], link[1], [])
    if len(link) == 3:
        return ChainLink(link[0], link[1], list(link[2]))
    raise UsageError(f"a chain link is (class, method) or (class, method, params), not {link!r}")


class JobClient:
    """Submits jobs to the daemon named by a configuration (or socket path)."""

    def __init__(
        self,
        *,
        config: str | None = None,
        socket: str | None = None,
        fallback: Fallback = "spawn",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """`timeout`: seconds to wait for the daemon's answer before falling back."""
        address, loaded = resolve_address(config, socket)
        self.client = Client(address, timeout=timeout)
        self.config_path = str(loaded.path) if loaded.path else None
        self.fallback = fallback

    def close(self) -> None:
        self.client.close()

    def submit(self, spec: JobSpec, *, fallback: Fallback | None = None) -> JobHandle:
        try:
            submitted = self.client.submit([spec])
        except DaemonUnreachable:
            if (fallback or self.fallback) == "error":
                raise
            return JobHandle(id=None, process=spawn_detached(spec, self.config_path))
        last = submitted.last_ids[0] if submitted.last_ids else submitted.ids[0]
        return JobHandle(id=submitted.ids[0], last_id=last, client=self.client)


_clients: dict[tuple[str | None, ...], JobClient] = {}
_clients_lock = threading.Lock()


def discovery_key(config: str | None, socket: str | None) -> tuple[str | None, ...]:
    """Everything that decides which daemon a call reaches, so that one client per daemon
    is kept without reading the configuration on every call."""
    return (
        config,
        socket,
        os.environ.get(CONFIG_ENV),
        os.environ.get(SOCKET_ENV),
        None if config or os.environ.get(CONFIG_ENV) else os.getcwd(),
    )


def close_clients() -> None:
    """Close the connections `run_background_job` keeps (e.g. at application shutdown)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _client_for(config: str | None, socket: str | None) -> JobClient:
    key = discovery_key(config, socket)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = JobClient(config=config, socket=socket)
        return client


def run_background_job(
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    fallback: Fallback = "spawn",
    config: str | None = None,
    socket: str | None = None,
    key: str | None = None,
) -> JobHandle:
    """Run `class_name().method(*params)` in the background, after `delay` seconds (or at
    `at`), then each job of `then` with the previous result first. Returns at once.

    `key` is the submit's idempotency key (a fresh random one by default): a second call
    with the same key returns the job of the first instead of a second job."""
    spec = make_spec(
        class_name, method, params, delay, priority=priority, at=at, then=then, key=key
    )
    return _client_for(config, socket).submit(spec, fallback=fallback)


def make_batch_spec(
    jobs: Sequence[LinkSpec],
    callback: LinkSpec,
    *,
    run_callback_on_failure: bool = False,
    delay: float = 0,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    key: str | None = None,
) -> JobSpec:
    """The spec of a batch: `callback` with the batch's jobs as its `batch`."""
    if isinstance(jobs, str | bytes) or not 0 < len(jobs) <= MAX_BATCH_JOBS:
        raise UsageError(f"a batch has 1 to {MAX_BATCH_JOBS} jobs")
    members = [_link(job) for job in jobs]
    for member in members:
        check_encodable(member.params)
    first = _link(callback)
    spec = make_spec(
        first.class_name, first.method, first.params, delay, priority=priority, at=at, key=key
    )
    spec = msgspec.structs.replace(
        spec, batch=members, run_callback_on_failure=bool(run_callback_on_failure)
    )
    _check_sendable(spec)
    return spec


def run_batch(
    jobs: Sequence[LinkSpec],
    callback: LinkSpec,
    *,
    run_callback_on_failure: bool = False,
    delay: float = 0,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    config: str | None = None,
    socket: str | None = None,
    key: str | None = None,
) -> JobHandle:
    """Run every job of `jobs` ((class, method) or (class, method, params)) in the
    background, then `callback` once all have ended, with the list of their results (in
    this order) as its first parameter. A job that failed or was cancelled gives None, and
    the callback is then cancelled unless `run_callback_on_failure`. Returns at once: a
    handle on the callback (`id`, the batch's id; `wait()` gives the callback's result).

    A batch needs the daemon: when none answers it raises DaemonUnreachable (there is no
    detached fallback)."""
    spec = make_batch_spec(
        jobs,
        callback,
        run_callback_on_failure=run_callback_on_failure,
        delay=delay,
        priority=priority,
        at=at,
        key=key,
    )
    client = _client_for(config, socket).client
    submitted = client.submit([spec])
    return JobHandle(id=submitted.ids[0], last_id=submitted.ids[0], client=client)
