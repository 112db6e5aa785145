"""Intake: a submit's jobs built into rows (refusals logged), stored all or none, and
answered once committed; then accepted: logged, timed, announced, and handed to dispatch.

The fast path of a single daemon: a job due now, submitted while a worker is idle and
nothing is queued ahead of it, is stored as already running with that worker and begins
once committed, with no claim (see `Dispatcher.idle_worker_for`), unless a pause is stored
(`Store.submit` decides, as it stores the row).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bgjobd import submission
from bgjobd.dispatch import Dispatcher
from bgjobd.joblog import JobLog, describe_params
from bgjobd.journal import Journal
from bgjobd.publisher import Publisher
from bgjobd.store.base import KeyTaken, NewJob, Store, UniqueTaken, as_queued
from bgjobd.workers import WorkerProcess
from bgjobs.config import Config
from bgjobs.errors import RefusedError
from bgjobs.model import JobInfo, JobSpec, JobState

Stored = list[tuple[list[int], bool]]
"""Per spec of a submit: the ids of its links (one for a plain job; a batch's callback
alone) and whether it already existed (its idempotency key, or an equal unique job)."""

OnStored = Callable[[Stored | BaseException], None]


@dataclass
class _Submitted:
    """What one submit stored, for its commit's callback."""

    results: Stored = field(default_factory=list)
    added: list[tuple[NewJob, list[int]]] = field(default_factory=list)
    """Jobs for dispatch: (first row, ids of the links)."""
    started: list[tuple[WorkerProcess, JobInfo]] = field(default_factory=list)
    """Jobs stored as running (the fast path), with their worker."""
    batches: list[tuple[list[NewJob], list[int]]] = field(default_factory=list)
    """Batches stored: their rows (the callback first) and ids."""
    durable: bool = False
    """Committed on its own already (`Store.submit`'s `alone`)."""


class Intake:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        journal: Journal,
        log: JobLog,
        owner: str,
        dispatcher: Dispatcher,
        publisher: Publisher,
    ) -> None:
        self.config = config
        self._store = store
        self._journal = journal
        self._log = log
        self._owner = owner
        self._dispatcher = dispatcher
        self._publisher = publisher

    def submit(self, specs: Sequence[JobSpec], on_stored: OnStored) -> None:
        """Store the jobs (all or none). Once they are committed, `on_stored` gets what
        was stored (see `Stored`), or the error that kept them from being stored.
        Refusals and bad parameters raise at once, storing nothing.

        A callback rather than a coroutine or future: a submit is the hottest request, and
        this way its reply goes out from inside the commit, with no task and no hop
        through the event loop's queue.

        A store that cannot take them now (a full disk, a lost database) raises
        StoreFull or StoreUnavailable at once, before anything is written."""
        self._journal.admit()
        now = time.time()
        built = [self.rows_of(spec, now) for spec in specs]
        submitted = _Submitted()
        if not self._store_each(built, submitted):
            single = len(built) == 1
            # Committed on its own only while no attempt runs: an attempt's end is a write
            # that would then need a commit of its own, where a submit's commit carries it.
            alone = single and self._journal.alone() and not self._dispatcher.busy
            for rows in built:
                self._store_rows(rows, submitted, now, may_start=single, alone=alone)

        def on_commit(failure: BaseException | None) -> None:
            if failure is not None:
                for worker, job in submitted.started:
                    self._dispatcher.give_back(worker, job.queue)
                on_stored(failure)
                return
            on_stored(submitted.results)
            self._accepted(submitted)

        self._journal.when_committed(on_commit, durable=submitted.durable)

    def rows_of(self, spec: JobSpec, now: float) -> list[NewJob]:
        """The rows a spec is stored as (a chain's links, a batch's callback and members);
        a refusal is logged as SECURITY and raised."""
        try:
            return submission.build(self.config, spec, now, self._owner)
        except RefusedError as exc:
            self._log.security(
                f"{spec.class_name}::{spec.method}",
                f"refused submit: {exc} (params: {describe_params(spec.params)})",
            )
            raise

    def _store_each(self, built: list[list[NewJob]], submitted: _Submitted) -> bool:
        """A bulk submit of single jobs (no chain, batch or unique key) stored with
        `Store.add_each`; False, storing nothing, when that does not apply or one of them
        conflicts (then each is stored on its own, to learn which)."""
        if len(built) < 2:
            return False
        rows = [links[0] for links in built if len(links) == 1]
        if len(rows) < len(built):
            return False
        if any(row.batch_callback or row.unique_key for row in rows):
            return False
        ids = self._store.add_each(rows)
        if ids is None:
            return False
        for row, job_id in zip(rows, ids, strict=True):
            submitted.added.append((row, [job_id]))
            submitted.results.append(([job_id], False))
        return True

    def _store_rows(
        self,
        rows: list[NewJob],
        submitted: _Submitted,
        now: float,
        *,
        may_start: bool,
        alone: bool = False,
    ) -> None:
        """One spec's rows: the live job with its unique key, the job stored with its
        idempotency key, or the rows stored, as running at once when the fast path allows
        (`may_start`) and no pause is stored (the store decides: `Store.submit`); with
        `alone`, perhaps committed at once on their own."""
        key = rows[0].unique_key
        existing = self._store.find_live_unique(key) if key else None
        if existing is not None:
            submitted.results.append(([existing], True))
            return
        worker = self._dispatcher.idle_worker_for(rows[0]) if may_start else None
        if worker is not None:
            rows[0] = replace(
                rows[0], state=JobState.RUNNING, started_at=now, worker_pid=worker.pid
            )
        try:
            added = self._store.submit(rows, alone=alone)
        except BaseException as exc:
            if worker is not None:
                self._dispatcher.give_back(worker, rows[0].queue)
            if isinstance(exc, KeyTaken):
                # Sent before (a resend after a timeout or a broken connection, or its
                # fallback runner got there first): that job is the answer.
                submitted.results.append((exc.job_ids, True))
                return
            if isinstance(exc, UniqueTaken):
                # An equal unique job stored a moment ago by another process.
                submitted.results.append(([exc.job_id], True))
                return
            raise
        ids = added.ids
        submitted.durable = added.committed
        if worker is not None and not added.started:
            # A pause is stored: the job waits queued for a claim, which checks pauses.
            self._dispatcher.give_back(worker, rows[0].queue)
            worker = None
            rows[0] = as_queued(rows[0])
        if worker is not None:
            submitted.started.append((worker, submission.started_job(rows[0], ids)))
        elif rows[0].batch_callback:
            submitted.batches.append((rows, ids))
            # A batch is answered with its callback's id alone, first and last (as a resend
            # of it is, found by its key): the job whose result is the batch's.
            ids = ids[:1]
        else:
            submitted.added.append((rows[0], ids))
        submitted.results.append((ids, False))

    # accepted: committed -------------------------------------------------------------------

    def _accepted(self, submitted: _Submitted) -> None:
        if len(submitted.results) == 1:
            self._accepted_rows(submitted)
            return
        with self._log.batched():  # a bulk submit's lines: one write
            self._accepted_rows(submitted)

    def _accepted_rows(self, submitted: _Submitted) -> None:
        for worker, job in submitted.started:
            self._publisher.later(job)
            self._dispatcher.start_stored(worker, job)
        for row, ids in submitted.added:
            self._accepted_job(row, ids)
        for rows, ids in submitted.batches:
            self._accepted_batch(rows, ids)
        self._dispatcher.pump()

    def _accepted_job(self, row: NewJob, ids: list[int]) -> None:
        job_id = ids[0]
        if row.state is JobState.SCHEDULED:
            chain = f" as link 1/{len(ids)} of chain {job_id}" if len(ids) > 1 else ""
            delay = max(row.run_at - time.time(), 0.0)
            self._log.info(
                f"{row.class_name}::{row.method}",
                f"job {job_id} delayed {delay:.3f}s{chain} (params: {describe_params(row.params)})",
            )
            self._dispatcher.due.add(row.run_at)
        elif row.state is JobState.QUEUED:
            # No line for a job queued to run now: its "started" line follows at once.
            self._dispatcher.notice_work(row.queue)
        for link_id in ids:
            self._publisher.now_by_id(link_id)

    def _accepted_batch(self, rows: list[NewJob], ids: list[int]) -> None:
        """A batch stored: its members are scheduled, its callback waits for them."""
        callback = rows[0]
        self._log.info(
            f"{callback.class_name}::{callback.method}",
            f"job {ids[0]} waits for its batch of {len(ids) - 1} jobs ({ids[1]}-{ids[-1]})",
        )
        for row, job_id in zip(rows[1:], ids[1:], strict=True):
            self._accepted_job(row, [job_id])
        self._publisher.now_by_id(ids[0])
