"""Start-up after a crash: attempts that were running when the last daemon died, and jobs
of `run_job.py` processes that died before finishing them."""

from __future__ import annotations

import socket
import time

from bgjobd import locks, outcomes
from bgjobd.attempts import AttemptResult
from bgjobd.engine import Engine
from bgjobd.store.base import FinishedAttempt
from bgjobs.model import ErrorInfo, JobState, Outcome


def recover(engine: Engine, began: set[int]) -> int:
    """Jobs this daemon's host left running go on. Those whose attempt had begun (their
    worker's lock file was left behind, `began`) count it as interrupted and go on per
    their retry policy; the others never reached a worker (the crash came between storing
    them as running and handing them over) or ended unrecorded, and get the attempt back,
    so that a crash never fails an acknowledged job that did not run. Returns how many
    jobs there were."""
    orphans = engine.store.running(engine.owner)
    for job in orphans:
        started = job.started_at.timestamp() if job.started_at else time.time()
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
    end_abandoned_oneshots(engine)
    # Through the journal: a commit that meets a full disk is redone and retried.
    engine.journal.flush()
    engine.wake()
    return len(orphans)


def end_abandoned_oneshots(engine: Engine) -> None:
    """Jobs of run_job.py processes on this host that died without finishing them end:
    a running one failed (interrupted), a waiting one cancelled."""
    store = engine.store
    host = socket.gethostname()
    for job in store.unfinished_oneshots():
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
