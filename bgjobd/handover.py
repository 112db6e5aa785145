"""Jobs a fallback drainer (`bgjobd.drain`) stored: who has them, and what to do with an
attempt whose drainer died. Shared by the daemon's spool import and the next drainer.

A drainer's jobs are one-shot rows owned by `bgjobd.drain@HOST:PID`. Whoever finds one
running under a drainer that is gone records its attempt the way the daemon's recovery
does: the outcome its worker wrote down (donefiles) if it finished, else an interrupted
attempt that counts (it had begun), under the retry rules. Never while its worker still
holds the job's lock file: the attempt is then still under way.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Final

from bgjobd import donefiles, locks, outcomes
from bgjobd.attempts import AttemptResult
from bgjobd.joblog import JobLog
from bgjobd.recovery import reported
from bgjobd.store.base import Store
from bgjobs.config import Config
from bgjobs.model import JobInfo, JobState, Outcome

DRAIN_OWNER: Final = "bgjobd.drain"


def owner_name() -> str:
    return f"{DRAIN_OWNER}@{socket.gethostname()}:{os.getpid()}"


def is_drainer(owner: str) -> bool:
    return owner.startswith(f"{DRAIN_OWNER}@")


def drainer_alive(owner: str) -> bool:
    """Whether the drainer named by `owner` still runs (one of another host counts as
    alive: it cannot be checked from here)."""
    host, _, pid = owner.rpartition("@")[2].partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return locks.pid_alive(int(pid))


def attempt_under_way(config: Config, job: JobInfo) -> bool:
    holder = locks.read_lock(locks.lock_path(config.locks_dir, job.class_name, job.method, job.id))
    return holder is not None and locks.pid_alive(holder.pid)


def blocked(config: Config, links: list[JobInfo]) -> bool:
    """Whether a live drainer (or a worker of a dead one) is running one of the links:
    they must be left alone until it is done."""
    return any(
        job.state is JobState.RUNNING
        and is_drainer(job.owner)
        and (drainer_alive(job.owner) or attempt_under_way(config, job))
        for job in links
    )


def settle_abandoned(config: Config, store: Store, log: JobLog, links: list[JobInfo]) -> list[int]:
    """Record the attempts that dead drainers left running among `links` (see `blocked`
    first); returns their ids. The caller commits, then removes their outcome files."""
    settled = []
    finished: dict[int, donefiles.Finished] | None = None
    for job in links:
        if job.state is not JobState.RUNNING or not is_drainer(job.owner):
            continue
        if finished is None:
            finished = donefiles.found(config.locks_dir)
        started = job.started_at.timestamp() if job.started_at else time.time()
        outcome = finished.get(job.id)
        if outcome is not None and outcome.done.attempt == job.attempts:
            result = reported(outcome, job.worker_pid, started)
        else:
            result = AttemptResult(
                Outcome.INTERRUPTED,
                started,
                time.time(),
                job.worker_pid,
                error=outcomes.INTERRUPTED,
            )
        log.warning(job.label, f"job {job.id}: its drainer ({job.owner}) exited during the attempt")
        outcomes.record(config, store, log, job, result)
        locks.release(locks.lock_path(config.locks_dir, job.class_name, job.method, job.id))
        settled.append(job.id)
    return settled


def forget_outcome_files(config: Config, links: list[JobInfo]) -> None:
    donefiles.remove_settled(config.locks_dir, {job.id for job in links})
