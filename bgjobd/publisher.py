"""Job events for whoever watches (clients' subscriptions, the dashboard's live view),
sent once the change they announce is committed: a watcher never hears of a job the store
could still lose, and events of one job come in the order of its commits."""

from __future__ import annotations

from typing import Final

from bgjobd.events import EventHub
from bgjobd.journal import Journal
from bgjobd.store.base import JobQuery, Store
from bgjobs.model import JobInfo, Outcome

NEWEST_LOOKED_AT: Final = 20
"""Jobs stored elsewhere announced per look at most (`stored_elsewhere`): a nudge for live
views, which then read the store; more at once would only be more of the same."""


class Publisher:
    def __init__(self, store: Store, journal: Journal, events: EventHub) -> None:
        self._store = store
        self._journal = journal
        self.events = events
        self._newest_seen = 0
        """The greatest job id `stored_elsewhere` has looked at."""

    @property
    def watched(self) -> bool:
        """Whether anyone listens: when nobody does, no job is read back to announce."""
        return self.events.has_listeners

    def later(self, job: JobInfo, outcome: Outcome | None = None) -> None:
        """The job as it is now, once the commit in progress is done."""
        if self.events.has_listeners:
            self._journal.after_commit(lambda: self.events.publish(job, outcome))

    def later_by_id(self, job_id: int) -> None:
        """The job as the store has it now, once the commit in progress is done."""
        if self.events.has_listeners:
            job = self._store.get(job_id)
            if job is not None:
                self.later(job)

    def now_by_id(self, job_id: int) -> None:
        """The job as the store has it, at once (the caller runs after a commit)."""
        if self.events.has_listeners:
            job = self._store.get(job_id)
            if job is not None:
                self.events.publish(job)

    def stored_elsewhere(self) -> None:
        """Announce the jobs stored since the last look by another process sharing the
        store (on PostgreSQL a client's own INSERT, another node's submit): no submit
        through this daemon told of them, and the live views would otherwise learn of a
        delayed one only when it runs. The newest few, only while anyone listens."""
        if not self.events.has_listeners:
            return
        jobs, _ = self._store.search(JobQuery(limit=NEWEST_LOOKED_AT))
        for job in reversed(jobs):
            if job.id > self._newest_seen:
                self.events.publish(job)
        if jobs:
            self._newest_seen = max(self._newest_seen, jobs[0].id)
