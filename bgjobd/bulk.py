"""Bulk actions: cancel or retry every job matching a filter (states, class, search).

A page of matching ids at a time (by id, so that the jobs changed drop out of no later
page), each page changed in the open transaction and committed before the next: the event
loop serves other requests between pages, so a cancel of 100,000 jobs does not stall the
daemon. Each job goes through the same steps as a single cancel or retry (its chain, its
batch, its event), so a bulk action is exactly many single ones.

A bulk cancel also stops the matching running jobs, as `bgjobctl cancel ID` does: what a
user means by "cancel all matching". They are asked to stop together once every waiting
one is cancelled, and the answer waits for them to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from bgjobd.actions import Actions
from bgjobd.journal import Journal
from bgjobd.store.base import JobQuery, Store
from bgjobs.errors import InvalidState, NotFound
from bgjobs.model import LIVE_STATES, JobState

PAGE: Final = 500
"""Jobs changed per commit."""
RETRYABLE: Final = frozenset({JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class BulkReport:
    done: int
    """Jobs cancelled (or queued again)."""
    skipped: int
    """Matching jobs left as they were: they changed meanwhile, or may not be retried (a
    unique job whose equal is live, a batch member)."""


class Bulk:
    def __init__(
        self, *, store: Store, journal: Journal, actions: Actions, wake: Callable[[], None]
    ) -> None:
        self._store = store
        self._journal = journal
        self._actions = actions
        self._wake = wake
        """Free workers claim the jobs queued again."""

    async def cancel(self, query: JobQuery, reason: str) -> BulkReport:
        """Cancel every matching job that is not final (only live states are looked at)."""
        states = [s for s in (query.states or sorted(LIVE_STATES)) if s in LIVE_STATES]
        query = replace(query, states=states)
        done = skipped = 0
        running: list[int] = []
        after = 0
        while states and (ids := self._store.matching_ids(query, after, PAGE)):
            after = ids[-1]
            for job_id in ids:
                job = self._store.get(job_id)
                if job is None or job.state.is_final:
                    skipped += 1  # ended meanwhile, or its chain's cancel took it
                elif job.state is JobState.RUNNING:
                    running.append(job_id)
                elif self._actions.cancel_waiting(job, reason) is not None:
                    done += 1
                else:
                    running.append(job_id)  # it started meanwhile
            await self._journal.committed()
        ended = await asyncio.gather(
            *(self._actions.cancel(job_id, reason) for job_id in running), return_exceptions=True
        )
        for outcome in ended:
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, InvalidState | NotFound):
                    raise outcome
                skipped += 1
            elif outcome.state is JobState.CANCELLED:
                done += 1
            else:
                skipped += 1  # it ended otherwise first
        return BulkReport(done, skipped)

    async def retry(self, query: JobQuery) -> BulkReport:
        """Queue again every matching failed or cancelled job (failed ones only unless the
        query names states)."""
        states = [s for s in (query.states or [JobState.FAILED]) if s in RETRYABLE]
        query = replace(query, states=states)
        done = skipped = 0
        after = 0
        while states and (ids := self._store.matching_ids(query, after, PAGE)):
            after = ids[-1]
            requeued = []
            for job_id in ids:
                job = self._store.get(job_id)
                if job is None or job.state not in RETRYABLE:
                    skipped += 1
                    continue
                try:
                    requeued.append(self._actions.requeue(job))
                except InvalidState:
                    skipped += 1
            await self._journal.committed()
            for job in requeued:
                self._actions.published(job)
            done += len(requeued)
            self._wake()
        return BulkReport(done, skipped)
