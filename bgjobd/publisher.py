"""Job events for whoever watches (clients' subscriptions, the dashboard's live view),
sent once the change they announce is committed: a watcher never hears of a job the store
could still lose, and events of one job come in the order of its commits.

A job another process changes (another node runs it, a `run_job.py` runner or a drainer
ends it) tells this daemon nothing: attempts' ends send no notice. So the jobs that clients
wait for by id (`wait()`, `bgjobctl watch`) are read again every WATCH_SECONDS, between
commits, and a state or attempt this daemon has not published is published then.
"""

from __future__ import annotations

import asyncio
from typing import Final

from bgjobd.events import EventHub
from bgjobd.journal import Journal
from bgjobd.store.base import JobQuery, Store
from bgjobd.store.offline import is_transient
from bgjobs.model import JobInfo, Outcome

WATCH_SECONDS: Final = 0.25
"""How often the jobs clients wait for are read again (a change made elsewhere reaches its
waiters within about this long)."""
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
        self._watch_timer: asyncio.TimerHandle | None = None
        self._looking = False
        """A look at the waited-for jobs awaits the next commit."""

    def start(self) -> None:
        """Read the jobs clients wait for again and again (see the module)."""
        self._watch_timer = asyncio.get_running_loop().call_later(WATCH_SECONDS, self._tick)

    def stop(self) -> None:
        if self._watch_timer is not None:
            self._watch_timer.cancel()
            self._watch_timer = None

    def _tick(self) -> None:
        self.start()
        if not self._looking and self.events.watched_ids():
            self._looking = True
            # After a commit: the store's own connection sees its uncommitted writes, and
            # no watcher may hear of one.
            self._journal.after_commit(self._look_at_watched)

    def _look_at_watched(self) -> None:
        self._looking = False
        watched = sorted(self.events.watched_ids())
        try:
            states = self._store.states_of(watched) if watched else {}
            for job_id, state in states.items():
                told = self.events.told(job_id)
                if told == state:
                    continue
                if told is None and not state[0].is_final:
                    # Never published here and not over: its watchers read it as they
                    # subscribed; what changes from here on is published.
                    self.events.seen(job_id, state)
                    continue
                job = self._store.get(job_id)
                if job is not None:
                    self.events.publish(job)
        except Exception as exc:  # noqa: BLE001  # a journal's callback must not raise
            if not is_transient(exc):  # the store busy or unreachable: the next look retries
                self.events.error(f"reading the waited-for jobs failed: {exc!r}")

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
