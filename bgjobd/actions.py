"""What a client may ask of a job already stored: cancel it (waiting, running here, or
running in another process), retry it, or retry every failed job. Each answers with the
job as it is once the change is committed (a cancel of a running job: once it ended)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from bgjobd import batches, chains, locks, outcomes
from bgjobd.attempts import Attempts
from bgjobd.dispatch import Dispatcher
from bgjobd.joblog import JobLog
from bgjobd.journal import Journal
from bgjobd.notices import POLL_SECONDS
from bgjobd.publisher import Publisher
from bgjobd.store.base import JobQuery, Store, UniqueTaken
from bgjobs.config import Config
from bgjobs.errors import InvalidState
from bgjobs.model import JobInfo, JobState
from bgjobs.protocol import ErrorCode

REMOTE_CANCEL_WAIT: Final = 5.0
"""Seconds a cancel of a job running on another node waits, beyond `kill_grace`, for it
to end there."""
RETRY_PAGE: Final = 1000


class Actions:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        journal: Journal,
        log: JobLog,
        attempts: Attempts,
        dispatcher: Dispatcher,
        publisher: Publisher,
        get: Callable[[int], JobInfo],
    ) -> None:
        self.config = config
        self._store = store
        self._journal = journal
        self._log = log
        self._attempts = attempts
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._get = get
        """The job with its progress; NotFound if there is none."""
        self._cancel_waiters: dict[int, asyncio.Event] = {}
        """Cancels of attempts running here, each waiting for the attempt's end."""

    # cancel --------------------------------------------------------------------------------

    async def cancel(self, job_id: int, reason: str) -> JobInfo:
        job = self._get(job_id)
        if job.state.is_final:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} already {job.state.value}")
        if job.state is JobState.RUNNING:
            return await self._cancel_running(job, reason)
        if self.cancel_waiting(job, reason) is None:  # it started meanwhile
            return await self.cancel(job_id, reason)
        await self._journal.committed()
        return self._get(job_id)

    def cancel_waiting(self, job: JobInfo, reason: str) -> JobInfo | None:
        """Cancel a job that waits (not running), with what follows for its chain and
        batch, in the open transaction; None if it is no longer waiting."""
        job_id = job.id
        recorded = batches.cancel_reason(job, reason)
        cancelled = self._store.cancel_waiting(job_id, recorded, time.time())
        if cancelled is None:
            return None
        self._log.warning(job.label, f"job {job_id} cancelled while {job.state.value} ({reason})")
        for link_id in outcomes.end_chain(self._store, self._log, cancelled):
            self._publisher.later_by_id(link_id)
        followup = outcomes.end_batch_member(self._store, self._log, cancelled)
        if followup.released is not None:
            self._publisher.later(followup.released)
            self._dispatcher.wake()
        for other_id in followup.cancelled:
            self._publisher.later_by_id(other_id)
        self._publisher.later(cancelled)
        return cancelled

    def attempt_recorded(self, job_id: int) -> None:
        """The job's attempt was recorded: a cancel waiting for it answers once that is
        committed."""
        waiter = self._cancel_waiters.pop(job_id, None)
        if waiter is not None:
            self._journal.after_commit(waiter.set)

    def attempt_lost(self, job_id: int) -> None:
        """The job's attempt here was refused (another node has the job): a cancel
        waiting for it asks the store again."""
        self._cancel_waiters.pop(job_id, None)

    async def _cancel_running(self, job: JobInfo, reason: str) -> JobInfo:
        ended = self._cancel_waiters.setdefault(job.id, asyncio.Event())
        if not self._attempts.cancel(job.id, reason):
            self._cancel_waiters.pop(job.id, None)
            return await self._cancel_elsewhere(job, reason)
        await ended.wait()
        after = self._get(job.id)
        if after.state.is_final:
            return after
        return await self.cancel(job.id, reason)  # it failed at that moment and was rescheduled

    async def _cancel_elsewhere(self, job: JobInfo, reason: str) -> JobInfo:
        """A job running in another process (a node, `run_job.py`): the request is stored,
        and its runner, which watches for requests, stops it. On this host its lock file
        goes too (the original's way: a runner's watcher sees it go). Waits for the end,
        up to the runner's kill grace and a few seconds more."""
        locks.release(locks.lock_path(self.config.locks_dir, job.class_name, job.method, job.id))
        if self._store.request_cancel(job.id, reason) is None:
            return self._get(job.id)  # it ended meanwhile
        await self._journal.committed()
        deadline = time.monotonic() + self.config.settings.daemon.kill_grace + REMOTE_CANCEL_WAIT
        while time.monotonic() < deadline:
            after = self._get(job.id)
            if after.state is not JobState.RUNNING or after.attempts != job.attempts:
                return after
            await asyncio.sleep(POLL_SECONDS)
        return self._get(job.id)

    # retry ---------------------------------------------------------------------------------

    async def retry(self, job_id: int) -> JobInfo:
        job = self._get(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise InvalidState(
                ErrorCode.INVALID_STATE,
                f"job {job_id} is {job.state.value}; only failed or cancelled jobs are retried",
            )
        requeued = self.requeue(job)
        await self._journal.committed()
        self.published(requeued)
        self._dispatcher.wake()
        return requeued

    def published(self, job: JobInfo) -> None:
        """Announce a job changed by an action, once its change is committed."""
        self._publisher.later(job)

    def requeue(self, job: JobInfo) -> JobInfo:
        """Queue a failed or cancelled job again, with its chain and batch, in the open
        transaction (the caller publishes it once committed); InvalidState if it may not."""
        job_id = job.id
        refusal = batches.retry_refusal(job)
        if refusal:
            raise InvalidState(ErrorCode.INVALID_STATE, refusal)
        try:
            requeued = self._store.requeue(job_id, time.time())
        except UniqueTaken as taken:
            raise InvalidState(
                ErrorCode.INVALID_STATE,
                f"job {job_id} is unique and the equal job {taken.job_id} is still live",
            ) from None
        if requeued is None:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} changed meanwhile")
        chains.revive_rest(self._store, job)
        batches.revive(self._store, job)
        self._log.info(job.label, f"job {job_id} retried with fresh attempts")
        return requeued

    async def retry_failed(self, class_name: str | None) -> list[int]:
        """Retry every job failed right now (oldest first); returns their ids."""
        ids: list[int] = []
        while True:
            page, _ = self._store.search(
                JobQuery(
                    states=[JobState.FAILED],
                    class_name=class_name,
                    limit=RETRY_PAGE,
                    offset=len(ids),
                    oldest_first=True,
                )
            )
            ids.extend(job.id for job in page)
            if len(page) < RETRY_PAGE:
                break
        for job_id in ids:
            await self.retry(job_id)
        return ids
