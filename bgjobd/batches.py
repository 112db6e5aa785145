"""Batches: a group of jobs (members) that run in parallel, and a callback job that runs
once when every member has ended, with the list of their results (in submit order) as its
first parameter.

The whole batch is stored at submit time, in one transaction: the callback first, in state
`waiting` (its id is the batch's id, `batch_id` on every row), then the members. Whenever a
member reaches a final state, the same transaction counts the members not final yet; at
zero it releases the callback by the state-checked `waiting -> queued` transition
(`Store.release_link`), so it is released once even when several members end in one
commit, or their outcomes are recorded again after a crash. A member that failed or was
cancelled gives `None` in the results; the callback then runs only if the batch asked for
it (`run_callback_on_failure`), and is cancelled otherwise. Retrying such a member brings
the callback back to waiting.

Cancelling the callback while it waits cancels the members that have not started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bgjobd.store.base import NewJob, Store
from bgjobs.config import Config
from bgjobs.errors import BadParams
from bgjobs.model import MAX_BATCH_JOBS, ChainLink, JobInfo, JobSpec, JobState
from bgjobs.protocol import ErrorCode

_REASON_PREFIX: Final = "batch member "
_UNRELEASED: Final = "before its batch ended: "
"""Leads the reason of a callback cancelled while it waited for its batch."""
CALLBACK_CANCELLED: Final = "its batch's callback was cancelled"


@dataclass
class Followup:
    """What a job's end did to its batch."""

    released: JobInfo | None = None
    """The batch's callback, now queued."""
    cancelled: list[int] = field(default_factory=list)
    """Jobs cancelled: the callback (a member failed), or members (the callback was)."""
    reason: str = ""


def build(config: Config, spec: JobSpec, now: float, owner: str) -> list[NewJob]:
    """The rows of a batch: the callback (waiting, with the key), then the members, due
    at the spec's time. Raises like `submission.build`."""
    from bgjobd import submission

    if spec.then:
        raise BadParams(ErrorCode.BAD_PARAMS, "a batch's callback cannot start a chain (then)")
    if len(spec.batch) > MAX_BATCH_JOBS:
        raise BadParams(
            ErrorCode.BAD_PARAMS,
            f"a batch has at most {MAX_BATCH_JOBS} jobs, not {len(spec.batch)}",
        )
    callback = ChainLink(spec.class_name, spec.method, spec.params)
    run_at = submission.check(config, spec, [callback, *spec.batch], now)
    due = JobState.SCHEDULED if run_at > now else JobState.QUEUED

    def row(link: ChainLink, state: JobState, *, first: bool) -> NewJob:
        return submission.new_row(
            config,
            spec,
            link,
            state,
            run_at=run_at,
            now=now,
            owner=owner,
            first=first,
            batch_callback=first,
            run_callback_on_failure=first and spec.run_callback_on_failure,
        )

    return [
        row(callback, JobState.WAITING, first=True),
        *(row(member, due, first=False) for member in spec.batch),
    ]


def member_reason(member: JobInfo) -> str:
    return f"{_REASON_PREFIX}{member.id} ({member.label}) ended {member.state.value}"


def ended(store: Store, job: JobInfo, now: float) -> Followup:
    """`job` reached a final state: release (or cancel) its batch's callback when it was
    the last member to end; cancel the members not started when it is the callback,
    cancelled."""
    if job.batch_id is None:
        return Followup()
    if job.is_batch_callback:
        return _callback_ended(store, job, now)
    if store.batch_pending(job.batch_id):
        return Followup()
    callback = store.get(job.batch_id)
    if callback is None or callback.state is not JobState.WAITING:
        return Followup()  # released (or cancelled) already
    members = store.batch_members(job.batch_id)
    failed = [member for member in members if member.state is not JobState.SUCCEEDED]
    if failed and not callback.run_callback_on_failure:
        reason = member_reason(failed[0])
        return Followup(cancelled=store.mark_cancelled([callback.id], reason, now), reason=reason)
    results = [member.result if member.state is JobState.SUCCEEDED else None for member in members]
    return Followup(released=store.release_link(callback.id, [results, *callback.params], now))


def _callback_ended(store: Store, callback: JobInfo, now: float) -> Followup:
    if callback.state is not JobState.CANCELLED:
        return Followup()
    members = [member.id for member in store.batch_members(callback.id)]
    cancelled = store.mark_cancelled(members, CALLBACK_CANCELLED, now) if members else []
    return Followup(cancelled=cancelled, reason=CALLBACK_CANCELLED)


def cancel_reason(job: JobInfo, reason: str) -> str:
    """The reason to record for cancelling `job` while it waits: a callback's says that it
    never got its batch's results (see `retry_refusal`)."""
    if job.is_batch_callback and job.state is JobState.WAITING:
        return _UNRELEASED + reason
    return reason


def retry_refusal(job: JobInfo) -> str | None:
    """Why a callback cancelled before it got its batch's results is not retried: it would
    run without them. After a failed job, that job is the one to retry."""
    reason = job.reason or ""
    if not job.is_batch_callback:
        return None
    if reason.startswith(_REASON_PREFIX):
        return (
            f"job {job.id} is the callback of batch {job.id}, cancelled because {reason}: "
            "retry that job, and the callback runs once the batch has ended"
        )
    if reason.startswith(_UNRELEASED):
        return (
            f"job {job.id} is the callback of batch {job.id}, cancelled {reason}; it never "
            "got the results: submit the batch again"
        )
    return None


def revive(store: Store, job: JobInfo) -> list[int]:
    """Member `job` is being retried: a callback that its failure cancelled waits again."""
    if job.batch_id is None or job.is_batch_callback:
        return []
    callback = store.get(job.batch_id)
    if (
        callback is None
        or callback.state is not JobState.CANCELLED
        or not (callback.reason or "").startswith(_REASON_PREFIX)
    ):
        return []
    store.set_waiting([callback.id])
    return [callback.id]


def counts(members: list[JobInfo]) -> dict[str, int]:
    """Members per state, for display (states with none left out)."""
    found: dict[str, int] = {}
    for member in members:
        found[member.state.value] = found.get(member.state.value, 0) + 1
    return found
