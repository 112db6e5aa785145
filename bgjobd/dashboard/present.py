"""How jobs look on the dashboard: the JSON shapes the API returns and the templates and the
page's script both render, so that the first paint and every live update agree.

Display strings are made here once; the script only formats the times that tick.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from bgjobd.dashboard.formatting import (
    fmt_duration,
    fmt_time,
    iso,
    relative,
    shorten,
    to_json_text,
)
from bgjobs.model import AttemptInfo, JobInfo, JobState, NodeInfo
from bgjobs.summary import summarize

_RETRYABLE: Final = frozenset({JobState.FAILED, JobState.CANCELLED})
PREVIEW_MARK: Final = "[cut] "
"""Leads the params of a listed job that the listing cut to a preview."""


def when(job: JobInfo, now: float) -> dict[str, Any]:
    """The moment that matters in the job's state, as a ticking time: how long it has run,
    when it is due, how long it has waited, or how long ago it finished."""
    if job.state is JobState.RUNNING and job.started_at is not None:
        kind, moment = "since", job.started_at
    elif job.state is JobState.SCHEDULED:
        kind, moment = "until", job.run_at
    elif job.state is JobState.QUEUED:
        kind, moment = "since", job.run_at
    elif job.state.is_final and job.finished_at is not None:
        kind, moment = "ago", job.finished_at
    else:
        kind, moment = "ago", job.created_at
    return {
        "tick": kind,
        "at": iso(moment),
        "text": relative(kind, moment, now),
        "title": fmt_time(moment) + " UTC",
    }


def duration_of(job: JobInfo, now: float) -> float | None:
    """How long the latest attempt ran (or has been running)."""
    if job.started_at is None:
        return None
    if job.state is JobState.RUNNING:
        return now - job.started_at.timestamp()
    if job.finished_at is None or job.finished_at < job.started_at:
        return None
    return (job.finished_at - job.started_at).total_seconds()


def error_text(job: JobInfo) -> str:
    if job.error is not None and job.state is not JobState.CANCELLED:
        return job.error.summary()
    return job.reason or ""


def progress_text(job: JobInfo) -> str:
    """`40% imported 4,000 rows` (floored: 100% only when done); empty without progress."""
    if job.progress is None:
        return ""
    percent = f"{int(job.progress * 100)}%"
    return f"{percent} {job.progress_message}" if job.progress_message else percent


def job_summary(job: JobInfo, now: float | None = None) -> dict[str, Any]:
    """One row of a listing: from the job's summary (params cut to a preview, flagged), so
    that a job with megabytes of params costs a listing no more than any other."""
    now = time.time() if now is None else now
    job = summarize(job)
    params_text = shorten(to_json_text(job.params))
    duration = duration_of(job, now)
    return {
        "id": job.id,
        "url": f"/dashboard/jobs/{job.id}",
        "class_name": job.class_name,
        "method": job.method,
        "label": job.label,
        "queue": job.queue,
        "params_text": f"{PREVIEW_MARK}{params_text}" if job.truncated else params_text,
        "truncated": job.truncated,
        "priority": job.priority.value,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "attempt_text": f"{job.attempts} of {job.max_attempts}",
        "run_at": iso(job.run_at),
        "run_at_text": fmt_time(job.run_at),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "finished_at_text": fmt_time(job.finished_at),
        "when": when(job, now),
        "duration": duration,
        "duration_text": fmt_duration(duration),
        "error_text": error_text(job),
        "worker_pid": job.worker_pid,
        "node": job.node,
        "chain_text": (
            f"{job.chain_position} of {job.chain_length}" if job.chain_id is not None else ""
        ),
        "batch_text": (
            ""
            if job.batch_id is None
            else f"#{job.batch_id}" + (" callback" if job.is_batch_callback else "")
        ),
        "can_cancel": not job.state.is_final,
        "can_retry": job.state in _RETRYABLE,
        "progress": job.progress,
        "progress_text": progress_text(job),
    }


def attempt_row(attempt: AttemptInfo) -> dict[str, Any]:
    error = attempt.error
    return {
        "number": attempt.label,
        "started_at_text": fmt_time(attempt.started_at),
        "finished_at_text": fmt_time(attempt.finished_at),
        "duration_text": fmt_duration(attempt.duration),
        "outcome": attempt.outcome.value if attempt.outcome else "running",
        "worker_pid": attempt.worker_pid,
        "node": attempt.node,
        "error_text": error.summary() if error else "",
        "traceback": error.traceback if error else "",
    }


def node_row(node: NodeInfo, this_node: str, now: float) -> dict[str, Any]:
    """One node sharing the queue: its name, how long ago it renewed its lease (a ticking
    time), its workers busy of all."""
    return {
        "name": node.name,
        "host": node.host,
        "pid": node.pid,
        "this": node.name == this_node,
        "expired": node.lease_until.timestamp() < now,
        "heartbeat": {
            "tick": "ago",
            "at": iso(node.heartbeat_at),
            "text": relative("ago", node.heartbeat_at, now),
            "title": fmt_time(node.heartbeat_at) + " UTC",
        },
        "busy_text": f"{node.workers_busy}/{node.workers_total}",
    }


def detail_fields(job: JobInfo, now: float) -> list[tuple[str, str]]:
    """The job's record as (label, text) pairs, in reading order."""
    fields = [
        ("ID", str(job.id)),
        ("Class", job.class_name),
        ("Method", job.method),
        ("State", job.state.value),
        *([("Progress", progress_text(job))] if job.progress is not None else []),
        ("Priority", job.priority.value),
        ("Queue", job.queue),
        ("Attempts", f"{job.attempts} of {job.max_attempts}"),
        ("Timeout", fmt_duration(job.timeout)),
        ("Created", fmt_time(job.created_at)),
        ("Due" if job.state is JobState.SCHEDULED else "Run at", fmt_time(job.run_at)),
        ("Started", fmt_time(job.started_at)),
        ("Finished", fmt_time(job.finished_at)),
        ("Duration", fmt_duration(duration_of(job, now))),
        ("Worker pid", str(job.worker_pid) if job.worker_pid else "—"),
        ("Node", job.node or "—"),
    ]
    if job.chain_id is not None:
        fields.append(("Chain", f"link {job.chain_position} of {job.chain_length}"))
    if job.is_batch_callback:
        fields.append(("Batch", f"#{job.id}: this job is its callback"))
    elif job.batch_id is not None:
        fields.append(("Batch", f"a job of batch #{job.batch_id}"))
    if job.unique_key:
        fields.append(("Unique key", job.unique_key))
    if job.reason:
        fields.append(("Reason", job.reason))
    return fields


def _record(job: JobInfo) -> Any:
    """The stored record as JSON-able builtins for API clients."""
    try:
        return msgspec.to_builtins(job)
    except TypeError:
        # A result msgspec cannot express (a msgpack extension type): show it as text.
        return msgspec.to_builtins(msgspec.structs.replace(job, result=repr(job.result)))


def job_detail(
    job: JobInfo,
    chain: list[JobInfo],
    output: dict[str, Any],
    now: float | None = None,
    batch: list[JobInfo] | None = None,
) -> dict[str, Any]:
    """Everything the detail page shows; `batch`: the members of the job's batch."""
    from bgjobd.dashboard.batch import batch_view

    now = time.time() if now is None else now
    error = job.error
    return {
        "job": job_summary(job, now),
        "record": _record(job),
        "fields": [[label, text] for label, text in detail_fields(job, now)],
        "params_json": to_json_text(job.params, indent=2),
        "result_json": (
            to_json_text(job.result, indent=2) if job.state is JobState.SUCCEEDED else None
        ),
        "error": (
            None
            if error is None
            else {"summary": error.summary(), "traceback": error.traceback, "type": error.type}
        ),
        "attempts": [attempt_row(attempt) for attempt in job.history],
        "chain": [job_summary(link, now) for link in chain],
        "output": output,
        "batch": batch_view(job, batch or [], now),
    }
