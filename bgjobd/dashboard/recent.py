"""Recently finished jobs, by finish time."""

from __future__ import annotations

from collections import deque

from bgjobd.attempts import AttemptResult
from bgjobd.dashboard.filters import FINISHED
from bgjobd.store.base import JobQuery, Store
from bgjobs.model import JobInfo


class RecentFinishes:
    """The jobs whose attempts ended last. The store lists jobs by id, but a job that started
    long ago may have finished a moment ago: "recent" means by finish time."""

    def __init__(self, size: int = 20) -> None:
        self._ids: deque[int] = deque(maxlen=size)

    def on_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """An engine attempt listener."""
        self._ids.append(job.id)

    def latest(self, store: Store, limit: int) -> list[JobInfo]:
        found: dict[int, JobInfo] = {}
        for job_id in dict.fromkeys(reversed(self._ids)):
            job = store.get(job_id)
            if job is not None and job.state.is_final:
                found[job_id] = job
        # Jobs cancelled before they ran, and those of before a restart, only the store knows.
        newest, _ = store.search(JobQuery(states=FINISHED, limit=limit))
        for job in newest:
            found.setdefault(job.id, job)
        ordered = sorted(
            found.values(),
            key=lambda job: (job.finished_at.timestamp() if job.finished_at else 0.0, job.id),
            reverse=True,
        )
        return ordered[:limit]
