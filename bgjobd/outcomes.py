"""Recording how an attempt ended and deciding what follows: success (and the next link of a
chain), a retry at a later time, or the end of the job (and the links after it); and, for a
member of a batch that was the last to end, its batch's callback (`bgjobd.batches`). The daemon
and `run_job.py` both record every attempt through here, so they behave the same.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Final

from bgjobd import batches, chains
from bgjobd.attempts import AttemptResult, log_outcome
from bgjobd.capture import STORED_TAIL_BYTES
from bgjobd.joblog import JobLog
from bgjobd.retries import Decision, decide
from bgjobd.store.base import AttemptOutput, FinishedAttempt, Store
from bgjobs.config import Config
from bgjobs.model import ErrorInfo, JobInfo, JobState, Outcome

INTERRUPTED: Final = ErrorInfo(
    type="Interrupted",
    message="the runner stopped while the attempt ran",
    hierarchy=["Interrupted"],
)


@dataclass
class Recorded:
    job: JobInfo
    """The job after the transition."""
    retry_at: float | None = None
    """When the job runs again (it is SCHEDULED), if it does."""
    released: JobInfo | None = None
    """The next link of its chain, now queued."""
    cancelled_links: list[int] = field(default_factory=list)
    """Jobs its end cancelled: later links of its chain, its batch's callback or members."""
    released_callback: JobInfo | None = None
    """Its batch's callback, now queued: the job was the last member to end."""


def output_origin(config: Config) -> str:
    """Names the disk that holds this runner's output files: its host and storage
    directory (several daemons on one host have storage directories of their own)."""
    return f"{socket.gethostname()}:{config.storage_dir}"


def record(
    config: Config, store: Store, joblog: JobLog, job: JobInfo, result: AttemptResult
) -> Recorded:
    """Raises StaleAttempt, recording and logging nothing, when the job's runner
    (`job.owner`) no longer holds this attempt (fencing: another node reclaimed it). The
    check is the recording statement's own (`FinishedAttempt.owner`): no read before it,
    and the log line and the output's tail follow it."""
    number = job.attempts
    attempt = FinishedAttempt(
        number,
        result.outcome,
        result.finished_at,
        result.duration,
        result.error,
        owner=job.owner,
        round=job.history[-1].round if job.history else None,
    )
    if result.outcome is Outcome.SUCCEEDED:
        done = store.finish_attempt(job.id, attempt, JobState.SUCCEEDED, result=result.result)
        _keep_output(config, store, job, result)
        log_outcome(joblog, job, number, result, None)
        return _after_success(store, joblog, done, result)
    if result.outcome is Outcome.CANCELLED:
        done = store.finish_attempt(
            job.id, attempt, JobState.CANCELLED, reason=result.cancel_reason
        )
        _keep_output(config, store, job, result)
        log_outcome(joblog, job, number, result, None)
        return _ended(store, joblog, done, end_chain(store, joblog, done))
    if result.outcome is Outcome.INTERRUPTED and result.error is None:
        # A shutdown stopped it through no fault of the job: queued again, attempt given back.
        done = store.finish_attempt(
            job.id, attempt, JobState.QUEUED, run_at=time.time(), count_attempt=False
        )
        _keep_output(config, store, job, result)
        log_outcome(joblog, job, number, result, None)
        return Recorded(done)
    return _after_failure(config, store, joblog, job, attempt=attempt, result=result)


def _keep_output(config: Config, store: Store, job: JobInfo, result: AttemptResult) -> None:
    printed = result.printed
    if printed is not None:
        # The worker runs job code: what it reports is capped again here.
        tail = printed.tail[-STORED_TAIL_BYTES:]
        output = AttemptOutput(tail, max(printed.size, len(tail)), output_origin(config))
        store.keep_output(job.id, job.attempts, output)


def _after_success(store: Store, joblog: JobLog, done: JobInfo, result: AttemptResult) -> Recorded:
    released = chains.release_next(store, done, result.result, time.time())
    if released is not None:
        joblog.info(
            released.label,
            f"job {released.id} queued as link {released.chain_position}/"
            f"{released.chain_length} of chain {released.chain_id}",
        )
    return _ended(store, joblog, done, [], released)


def _after_failure(
    config: Config,
    store: Store,
    joblog: JobLog,
    job: JobInfo,
    *,
    attempt: FinishedAttempt,
    result: AttemptResult,
) -> Recorded:
    number = attempt.number
    error = result.error or INTERRUPTED
    if result.no_retry is not None:
        decision = Decision(False, 0.0, job.max_attempts, result.no_retry)
    else:
        decision = decide(config, job.class_name, number, error, result.directive)
    if decision.retry:
        retry_at = time.time() + decision.delay
        updated = store.finish_attempt(
            job.id,
            attempt,
            JobState.SCHEDULED,
            run_at=retry_at,
            max_attempts=decision.max_attempts,
        )
        _keep_output(config, store, job, result)
        log_outcome(joblog, job, number, result, decision)
        return Recorded(updated, retry_at=retry_at)
    done = store.finish_attempt(
        job.id,
        attempt,
        JobState.FAILED,
        max_attempts=decision.max_attempts,
        reason=f"{decision.decided_by}: no retry" if decision.decided_by else None,
    )
    _keep_output(config, store, job, result)
    log_outcome(joblog, job, number, result, decision)
    plural = "s" if number > 1 else ""
    joblog.error(
        job.label, f"job {job.id} failed after {number} attempt{plural}: {error.summary()}"
    )
    return _ended(store, joblog, done, end_chain(store, joblog, done))


def _ended(
    store: Store,
    joblog: JobLog,
    done: JobInfo,
    cancelled: list[int],
    released: JobInfo | None = None,
) -> Recorded:
    followup = end_batch_member(store, joblog, done)
    return Recorded(
        done,
        released=released,
        cancelled_links=cancelled + followup.cancelled,
        released_callback=followup.released,
    )


def end_batch_member(store: Store, joblog: JobLog, job: JobInfo) -> batches.Followup:
    """`job` reached a final state: what follows for its batch, if it is in one, said in
    the log. Callers queue the released callback."""
    followup = batches.ended(store, job, time.time())
    callback = followup.released
    if callback is not None:
        joblog.info(
            callback.label,
            f"job {callback.id} queued: every job of its batch has ended (the last: job {job.id})",
        )
    for job_id in followup.cancelled:
        joblog.warning(job.label, f"job {job_id} cancelled: {followup.reason}")
    return followup


def end_chain(store: Store, joblog: JobLog, link: JobInfo) -> list[int]:
    """`link` ended without success: cancel the links after it, and say so."""
    cancelled = chains.cancel_rest(store, link, time.time())
    for link_id in cancelled:
        joblog.warning(link.label, f"job {link_id} cancelled: {chains.cancel_reason(link)}")
    return cancelled
