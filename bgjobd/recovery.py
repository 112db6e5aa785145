"""Start-up after a crash: attempts that were running when the last daemon died, and jobs
of `run_job.py` processes that died before finishing them."""

from __future__ import annotations

import socket
import time

from bgjobd import donefiles, locks, outcomes
from bgjobd.attempts import AttemptResult
from bgjobd.engine import Engine
from bgjobd.retries import Directive
from bgjobd.store.base import FinishedAttempt
from bgjobs.model import ErrorInfo, JobState, Outcome


def recover(engine: Engine, began: set[int]) -> int:
    """Jobs this daemon's host left running go on. An attempt whose worker wrote its
    outcome down (donefiles) had finished: that outcome is recorded, and the job is not
    run again. Those whose attempt had begun (their worker's lock file was left behind,
    `began`) count it as interrupted and go on per their retry policy; the others never
    reached a worker (the crash came between storing them as running and handing them
    over) and get the attempt back, so that a crash never fails an acknowledged job that
    did not run. An attempt whose claim the crash lost (the job is queued again) is
    recorded too. Returns how many jobs there were."""
    finished = donefiles.found(engine.config.locks_dir)
    orphans = engine.store.running(engine.owner)
    legacy = f"bgjobd@{socket.gethostname()}"  # the one owner name before nodes (schema 5)
    if legacy != engine.owner:
        orphans += engine.store.running(legacy)
    for job in orphans:
        started = job.started_at.timestamp() if job.started_at else time.time()
        outcome = finished.get(job.id)
        if outcome is not None and outcome.done.attempt == job.attempts:
            engine.record_attempt(job, reported(outcome, job.worker_pid, started))
            continue
        began_here = job.id in began
        result = AttemptResult(
            Outcome.INTERRUPTED,
            started,
            time.time(),
            job.worker_pid,
            # An interrupted attempt with an error counts; without one it is given back.
            error=outcomes.INTERRUPTED if began_here else None,
            cancel_reason=None
            if began_here
            else "the daemon stopped before the attempt was known to begin",
        )
        engine.record_attempt(job, result)
    running = {job.id for job in orphans}
    unclaimed = _record_unclaimed_runs(engine, began - running, finished, running)
    end_abandoned_oneshots(engine)
    # Through the journal: a commit that meets a full disk is redone and retried.
    engine.journal.flush()
    if not engine.store.in_transaction:  # committed: the outcome files have served
        _remove_outcome_files(engine)
    engine.wake()
    return len(orphans) + unclaimed


def _remove_outcome_files(engine: Engine) -> None:
    """The files of workers that are gone, once committed: unless one holds a record of a
    job still running under another owner (a drainer or `run_job.py` that died too: whoever
    settles that job reads the record)."""
    store = engine.store
    for path, job_ids in donefiles.left_behind(engine.config.locks_dir):
        jobs = (store.get(job_id) for job_id in job_ids)
        if not any(
            job is not None and job.state is JobState.RUNNING and job.owner != engine.owner
            for job in jobs
        ):
            donefiles.remove([str(path)])


def _record_unclaimed_runs(
    engine: Engine, began: set[int], finished: dict[int, donefiles.Finished], skip: set[int]
) -> int:
    """Attempts that began although the store has the job waiting: the claim was still
    to be committed when the daemon died. Each is claimed now and recorded as it ended
    (its outcome file) or as interrupted (only its lock file), so every run has its
    line in the job's history."""
    store = engine.store
    count = 0
    for job_id in sorted((began | finished.keys()) - skip):
        job = store.get(job_id)
        if job is None or job.owner not in (engine.owner, f"bgjobd@{socket.gethostname()}"):
            continue
        if job.state not in (JobState.QUEUED, JobState.SCHEDULED):
            continue  # recorded already (the file outlived its commit by a moment)
        outcome = finished.get(job_id)
        if outcome is not None and outcome.done.attempt != job.attempts + 1:
            outcome = None  # an earlier attempt's, already recorded
        if outcome is None and job_id not in began:
            continue
        started = outcome.started_at if outcome is not None else time.time()
        claimed = store.claim(job_id, engine.owner, None, max(started, job.run_at.timestamp()))
        if claimed is None:
            continue
        if outcome is not None:
            engine.record_attempt(claimed, reported(outcome, None, outcome.started_at))
        else:
            now = time.time()
            engine.record_attempt(
                claimed,
                AttemptResult(Outcome.INTERRUPTED, now, now, None, error=outcomes.INTERRUPTED),
            )
        count += 1
    return count


def reported(outcome: donefiles.Finished, worker_pid: int | None, started: float) -> AttemptResult:
    """The attempt's result as its worker reported it (see `Attempts`), from `started`
    (when it was claimed). A file's time is coarse (a clock tick): never before the
    attempt's start plus its run."""
    done = outcome.done
    directive = None
    if done.directive is not None:
        directive = Directive(retry=done.directive == "retry", delay=done.retry_delay)
    return AttemptResult(
        Outcome.FAILED if done.error else Outcome.SUCCEEDED,
        started,
        max(outcome.finished_at, started + done.duration),
        worker_pid,
        result=done.result,
        error=done.error,
        directive=directive,
        note=done.note,
    )


def end_abandoned_oneshots(engine: Engine) -> None:
    """Jobs of run_job.py processes on this host that died without finishing them end:
    a running one failed (interrupted), a waiting one cancelled."""
    store = engine.store
    host = socket.gethostname()
    for job in store.unfinished_oneshots():
        if job.owner.startswith("bgjobd.drain@"):
            continue  # a fallback drainer's: its spool file brings it back (bgjobd.handover)
        runner_host, _, pid = job.owner.rpartition("@")[2].partition(":")
        if runner_host != host or not pid.isdigit() or locks.pid_alive(int(pid)):
            continue
        reason = f"its runner ({job.owner}) exited before finishing it"
        now = time.time()
        if job.state is JobState.RUNNING:
            started = job.started_at.timestamp() if job.started_at else now
            error = ErrorInfo(type="Interrupted", message=reason, hierarchy=["Interrupted"])
            attempt = FinishedAttempt(job.attempts, Outcome.INTERRUPTED, now, now - started, error)
            store.finish_attempt(job.id, attempt, JobState.FAILED, reason=reason)
        else:
            store.cancel_waiting(job.id, reason, now)
        engine.log.warning(job.label, f"job {job.id} ended: {reason}")
