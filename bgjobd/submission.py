"""Turning what a caller asked for (`JobSpec`) into rows to store, after the allow-list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from bgjobd.store.base import NewJob
from bgjobs.allowlist import refusal
from bgjobs.config import Config
from bgjobs.errors import BadParams, RefusedError, TooLarge
from bgjobs.model import MAX_KEY_LENGTH, AttemptInfo, ChainLink, JobInfo, JobSpec, JobState
from bgjobs.protocol import ErrorCode
from bgjobs.sizes import format_size
from bgjobs.times import delay_problem, run_at_problem


def unique_key(class_name: str, method: str, params: list[Any]) -> str:
    import hashlib  # only `unique` jobs need it; the daemon is smaller without

    digest = hashlib.sha256(msgspec.msgpack.encode([class_name, method, params]))
    return digest.hexdigest()[:32]


def limit_key(config: Config, link: ChainLink) -> str:
    """What the class's limits count per (`limit_by`): a digest of that parameter's value
    as submitted, or "" (the whole class). BadParams if the job has no such parameter."""
    index = config.limit_by_of(link.class_name)
    if index is None:
        return ""
    if index >= len(link.params):
        raise BadParams(
            ErrorCode.BAD_PARAMS,
            f"{link.class_name} counts its limits per parameter {index} "
            f"(jobs.{link.class_name}.limit_by), and this job has {len(link.params)} "
            "parameter(s)",
        )
    import hashlib

    return hashlib.sha256(msgspec.msgpack.encode(link.params[index])).hexdigest()[:32]


def check_allowed(config: Config, class_name: str, method: str) -> None:
    reason = refusal(config, class_name, method)
    if reason:
        raise RefusedError(reason)


def check_params_size(config: Config, link: ChainLink) -> None:
    """Refuse params whose encoding is over `max_params_bytes`: decided at the door, so a
    stored job always fits in the message that hands it to a worker."""
    size = len(msgspec.msgpack.encode(link.params))
    limit = config.max_params_bytes
    if size > limit:
        raise TooLarge(
            ErrorCode.TOO_LARGE,
            f"params of {link.class_name}::{link.method} are {format_size(size)} "
            f"({size} bytes), over max_params_bytes ({format_size(limit)})",
        )


def check_key(key: str | None) -> None:
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise BadParams(
            ErrorCode.BAD_PARAMS, f"an idempotency key has 1 to {MAX_KEY_LENGTH} characters"
        )


def due_time(spec: JobSpec, now: float) -> float:
    """When the job is due; BadParams for a time out of `bgjobs.times`'s range."""
    if spec.run_at is not None:
        problem = run_at_problem(spec.run_at)
        if problem:
            raise BadParams(ErrorCode.BAD_PARAMS, f"run_at {problem}")
        return spec.run_at.timestamp()
    problem = delay_problem(spec.delay)
    if problem:
        raise BadParams(ErrorCode.BAD_PARAMS, f"delay {problem}")
    return now + spec.delay


def build(config: Config, spec: JobSpec, now: float, owner: str) -> list[NewJob]:
    """The rows of one submit: the job, then each later link of its chain (waiting); or
    for a batch, its callback (waiting), then its members (see `bgjobd.batches`).
    Raises RefusedError if any link is not allow-listed, TooLarge for params over
    `max_params_bytes`, BadParams for a bad time."""
    if spec.batch:
        from bgjobd import batches

        return batches.build(config, spec, now, owner)
    links = [ChainLink(spec.class_name, spec.method, spec.params), *spec.then]
    run_at = check(config, spec, links, now)
    length = len(links) if len(links) > 1 else None
    rows = []
    for position, link in enumerate(links, start=1):
        first = position == 1
        if first:
            state = JobState.SCHEDULED if run_at > now else JobState.QUEUED
        else:
            state = JobState.WAITING
        unique = config.job_settings(link.class_name).unique and first
        rows.append(
            new_row(
                config,
                spec,
                link,
                state,
                run_at=run_at,
                now=now,
                owner=owner,
                first=first,
                chain_position=position if length else None,
                chain_length=length,
                unique_key=(
                    unique_key(link.class_name, link.method, list(link.params)) if unique else None
                ),
            )
        )
    return rows


def check(config: Config, spec: JobSpec, links: list[ChainLink], now: float) -> float:
    """Every check a submit passes before anything is stored; returns when it is due."""
    for link in links:
        check_allowed(config, link.class_name, link.method)
        check_params_size(config, link)
    run_at = due_time(spec, now)
    check_key(spec.key)
    check_queue(config, spec.queue)
    return run_at


def check_queue(config: Config, queue: str | None) -> None:
    """A queue named by a submit is one the configuration has (`[queues.NAME]`)."""
    if queue is not None and not config.knows_queue(queue):
        known = ", ".join(sorted(config.queue_workers))
        raise BadParams(ErrorCode.BAD_PARAMS, f"unknown queue {queue!r} (configured: {known})")


def new_row(
    config: Config,
    spec: JobSpec,
    link: ChainLink,
    state: JobState,
    *,
    run_at: float,
    now: float,
    owner: str,
    first: bool,
    **extra: Any,
) -> NewJob:
    """One job of a submit (a chain's link, a batch's callback or member): the first
    carries the submit's idempotency key; every one carries the submitter's trace, so
    its attempts are spans of that trace."""
    return NewJob(
        class_name=link.class_name,
        method=link.method,
        params=list(link.params),
        priority=spec.priority or config.priority_of(link.class_name),
        state=state,
        run_at=run_at,
        max_attempts=config.max_attempts_of(link.class_name),
        timeout=config.timeout_of(link.class_name),
        created_at=now,
        owner=owner,
        key=spec.key if first else None,
        trace=spec.trace,
        queue=spec.queue or config.queue_of(link.class_name),
        limit_key=limit_key(config, link),
        **extra,
    )


def started_job(row: NewJob, ids: list[int]) -> JobInfo:
    """The job a fast-path submit just stored as running, without reading it back."""
    started = datetime.fromtimestamp(row.started_at or row.created_at, UTC)
    chained = len(ids) > 1
    return JobInfo(
        id=ids[0],
        class_name=row.class_name,
        method=row.method,
        params=row.params,
        priority=row.priority,
        state=JobState.RUNNING,
        run_at=datetime.fromtimestamp(row.run_at, UTC),
        attempts=1,
        max_attempts=row.max_attempts,
        timeout=row.timeout,
        created_at=datetime.fromtimestamp(row.created_at, UTC),
        started_at=started,
        worker_pid=row.worker_pid,
        owner=row.owner,
        chain_id=ids[0] if chained else None,
        chain_position=row.chain_position,
        chain_length=row.chain_length,
        unique_key=row.unique_key,
        key=row.key,
        trace=row.trace,
        queue=row.queue,
        history=[AttemptInfo(number=1, started_at=started, worker_pid=row.worker_pid)],
    )
