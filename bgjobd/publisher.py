"""Job events for whoever watches (clients' subscriptions, the dashboard's live view),
sent once the change they announce is committed: a watcher never hears of a job the store
could still lose, and events of one job come in the order of its commits."""

from __future__ import annotations

from bgjobd.events import EventHub
from bgjobd.journal import Journal
from bgjobd.store.base import Store
from bgjobs.model import JobInfo, Outcome


class Publisher:
    def __init__(self, store: Store, journal: Journal, events: EventHub) -> None:
        self._store = store
        self._journal = journal
        self.events = events

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
