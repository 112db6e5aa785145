"""`run_background_jobs()`: many jobs handed to the daemon at once (a bulk enqueue).

    from bgjobctl import run_background_jobs
    handles = run_background_jobs(("Mailer", "send", [user_id]) for user_id in user_ids)

The jobs travel up to JOBS_PER_REQUEST in one request (less when their params are large),
and the daemon stores each request's jobs all or none, in one statement per few hundred
rows, answering once they are committed. Each job carries its own idempotency key, so a
request resent after a broken connection stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final

import msgspec

from bgjobctl.library import (
    Fallback,
    JobClient,
    JobHandle,
    LinkSpec,
    _client_for,
    check_sendable_size,
    make_spec,
    new_key,
    spool_or_raise,
)
from bgjobs.errors import DaemonUnreachable, UsageError
from bgjobs.model import JobSpec, Priority
from bgjobs.protocol import MAX_FRAME_BYTES

JOBS_PER_REQUEST: Final = 1000
REQUEST_BYTES: Final = MAX_FRAME_BYTES // 2
"""Well under the frame limit: a request's other fields and its encoding's overhead fit."""


class BulkIncomplete(DaemonUnreachable):
    """The daemon stopped answering part-way through a bulk submit with fallback="error":
    the jobs of `handles` are stored, the rest are not."""

    def __init__(self, message: str, handles: list[JobHandle]) -> None:
        super().__init__(message)
        self.handles = handles


def run_background_jobs(
    jobs: Iterable[LinkSpec],
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    queue: str | None = None,
    fallback: Fallback = "spawn",
    config: str | None = None,
    socket: str | None = None,
) -> list[JobHandle]:
    """Run each of `jobs` ((class, method) or (class, method, params)) in the background,
    with the same delay (or `at`), priority and queue; a handle per job, in order.

    A job that is refused (not allow-listed, bad params) raises before that request is
    stored; the requests sent before it are stored. With no daemon answering, the jobs
    not yet stored fall back as `run_background_job`'s do (spooled, each); with
    fallback="error", BulkIncomplete says how many were stored and holds their handles."""
    client = _client_for(config, socket)
    handles: list[JobHandle] = []
    requests = _requests(_specs(jobs, delay, priority=priority, at=at, queue=queue))
    for request in requests:
        try:
            submitted = client.client.submit(request)
        except DaemonUnreachable as exc:
            if fallback == "error":
                raise BulkIncomplete(
                    f"{exc}; {len(handles)} jobs were stored before it, the rest were not",
                    handles,
                ) from exc
            _spool(client, [*request, *(spec for rest in requests for spec in rest)], handles)
            return handles
        handles += [
            JobHandle(id=job_id, last_id=job_id, client=client.client) for job_id in submitted.ids
        ]
    return handles


def _checked(jobs: Iterable[LinkSpec]) -> Iterator[tuple[str, str, list[object]]]:
    if isinstance(jobs, str | bytes):
        raise UsageError("jobs must be an iterable of (class, method[, params]) tuples")
    for job in jobs:
        if not isinstance(job, tuple | list) or len(job) not in (2, 3):
            raise UsageError(f"a job is (class, method) or (class, method, params), not {job!r}")
        if len(job) == 2:
            yield (job[0], job[1], [])
        elif isinstance(job[2], str | bytes):
            raise UsageError("params must be a list of values, not a single string")
        else:
            yield (job[0], job[1], list(job[2]))


def _specs(
    jobs: Iterable[LinkSpec],
    delay: float,
    *,
    priority: Priority | str | None,
    at: datetime | None,
    queue: str | None,
) -> Iterator[tuple[JobSpec, int]]:
    """Each job's spec (with its own idempotency key) and its encoded size. What the jobs
    share (delay or due time, priority, queue, the caller's trace) is checked once, by
    `make_spec`; each job is encoded once, for what `make_spec` checks of one (its params
    encodable, the whole small enough to send) and for its request's size alike."""
    shared = make_spec("", "", [], delay, priority=priority, at=at, queue=queue)
    encoder = msgspec.msgpack.Encoder()
    for class_name, method, params in _checked(jobs):
        spec = JobSpec(
            class_name=class_name,
            method=method,
            params=params,
            priority=shared.priority,
            delay=shared.delay,
            run_at=shared.run_at,
            key=new_key(),
            trace=shared.trace,
            queue=shared.queue,
        )
        try:
            size = len(encoder.encode(spec))
        except (TypeError, OverflowError, ValueError, RecursionError) as exc:
            raise UsageError(f"parameters cannot be encoded: {exc}") from None
        check_sendable_size(size)
        yield spec, size


def _requests(specs: Iterator[tuple[JobSpec, int]]) -> Iterator[list[JobSpec]]:
    """The specs in requests of at most JOBS_PER_REQUEST jobs and REQUEST_BYTES."""
    request: list[JobSpec] = []
    size = 0
    for spec, spec_size in specs:
        if request and (len(request) == JOBS_PER_REQUEST or size + spec_size > REQUEST_BYTES):
            yield request
            request, size = [], 0
        request.append(spec)
        size += spec_size
    if request:
        yield request


def _spool(client: JobClient, specs: list[JobSpec], handles: list[JobHandle]) -> None:
    for spec in specs:
        spooled = spool_or_raise(client.spooler, spec)
        handles.append(JobHandle(id=None, client=client.client, spooled=spooled))
