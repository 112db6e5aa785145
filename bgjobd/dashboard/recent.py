"""Recently finished jobs, by finish time."""

from __future__ import annotations

from collections import deque

from bgjobd.attempts import AttemptResult
from bgjobd.dashboard.filters import FINISHED
from bgjobd.service import QueueService
from bgjobd.store.base import JobQuery
from bgjobs.model import JobInfo


class RecentFinishes:
    """The jobs whose attempts ended last. The store lists jobs by id, but a job that started
    long ago may have finished a moment ago: "recent" means by finish time."""

    def __init__(self, size: int = 20) -> None:
        self._ids: deque[int] = deque(maxlen=size)

    def on_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """An attempt listener (`QueueService.watch_attempts`)."""
        self._ids.append(job.id)

    def latest(self, service: QueueService, limit: int) -> list[JobInfo]:
        found: dict[int, JobInfo] = {}
        for job_id in dict.fromkeys(reversed(self._ids)):
            job = service.find(job_id)
            if job is not None and job.state.is_final:
                found[job_id] = job
        # Jobs cancelled before they ran, and those of before a restart, only the store knows.
        newest, _ = service.search(JobQuery(states=FINISHED, limit=limit))
        for job in newest:
            found.setdefault(job.id, job)
        ordered = sorted(
            found.values(),
            key=lambda job: (job.finished_at.timestamp() if job.finished_at else 0.0, job.id),
            reverse=True,
        )
        return ordered[:limit]
