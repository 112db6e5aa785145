"""The life of a job inside the daemon, composed of units with one job each:

- `Intake` (bgjobd.intake): a submit stored and answered, its jobs accepted;
- `Dispatcher` (bgjobd.dispatch): free workers claim jobs from the store and run their
  attempts; the due timer and the watch for other processes' commits;
- `Engine.record_attempt` (here): an attempt's end recorded by `bgjobd.outcomes`, and
  what follows (a retry's due time, a released link, the events, the throughput count);
- `Actions` (bgjobd.actions): cancel, retry, retry every failed job;
- `reclaim` and `abandon_attempts` (here): the jobs of a dead node, and ours when this
  node lost its lease (see bgjobd.leases).

The store is the queue, shared by every node (and `run_job.py`) pointed at it. Every
change goes to the store first (through the journal's group commit); events go out once
it is committed (bgjobd.publisher). Handlers and the dashboard reach all this through
`bgjobd.service.QueueService`, never through the engine's parts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

from msgspec.structs import replace as replace_struct

from bgjobd import outcomes
from bgjobd.actions import Actions
from bgjobd.attempts import AttemptResult, Attempts, RunningAttempt
from bgjobd.dispatch import Claims, Dispatcher
from bgjobd.events import EventHub
from bgjobd.intake import Intake, OnStored
from bgjobd.joblog import JobLog
from bgjobd.journal import Journal
from bgjobd.publisher import Publisher
from bgjobd.store.base import StaleAttempt, Store, WaitingEntry
from bgjobd.throughput import FinishCounter
from bgjobs.config import Config
from bgjobs.errors import NotFound
from bgjobs.model import ErrorInfo, JobInfo, JobSpec, JobState, Outcome
from bgjobs.protocol import ErrorCode

AttemptListener = Callable[[JobInfo, AttemptResult], None]


class Engine:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        journal: Journal,
        attempts: Attempts,
        events: EventHub,
        joblog: JobLog,
        owner: str,
        claims: Claims | None = None,
    ) -> None:
        """`claims`: what this process runs (by default the store's shared queue, each
        named queue in its own slots)."""
        self.config = config
        self.store = store
        self.journal = journal
        self.attempts = attempts
        self.log = joblog
        self.owner = owner
        self.publisher = Publisher(store, journal, events)
        self.dispatcher = Dispatcher(
            store=store,
            attempts=attempts,
            log=joblog,
            owner=owner,
            limits=config.concurrency_limits,
            publisher=self.publisher,
            record=self.record_attempt,
            claims=claims,
            queues=config.queue_workers if claims is None else None,
            rates=config.rate_limits,
        )
        self.intake = Intake(
            config=config,
            store=store,
            journal=journal,
            log=joblog,
            owner=owner,
            dispatcher=self.dispatcher,
            publisher=self.publisher,
        )
        self.actions = Actions(
            config=config,
            store=store,
            journal=journal,
            log=joblog,
            attempts=attempts,
            dispatcher=self.dispatcher,
            publisher=self.publisher,
            get=self.get,
        )
        self.finishes = FinishCounter()
        self.shutting_down = False
        """Set first when the daemon stops: from then on every request is refused."""
        self.attempt_listeners: list[AttemptListener] = []
        """Called after every attempt with the job (as it ran) and how it ended: metrics."""
        attempts.progress_listeners.append(self._progressed)

    @property
    def events(self) -> EventHub:
        return self.publisher.events

    @property
    def busy(self) -> int:
        """Workers running an attempt, or about to."""
        return self.dispatcher.busy

    # start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        self.dispatcher.start()
        self.publisher.start()

    def wake(self) -> None:
        """Start ready jobs on free workers (after recovery queued some)."""
        self.dispatcher.wake()

    def reconfigure(self, config: Config) -> None:
        """A reloaded configuration: the registry, limits and retry rules apply to the next
        submit, claim and attempt."""
        self.config = self.intake.config = self.actions.config = config
        self.attempts.config = config
        self.attempts.pool.reconfigure(config)
        self.dispatcher.limits = config.concurrency_limits
        self.dispatcher.rates = config.rate_limits
        self.wake()

    async def drain(self, timeout: float) -> None:
        """Stop dispatching; wait up to `timeout` for running attempts, then interrupt them
        (they stay queued for the next start without losing an attempt)."""
        await self.dispatcher.drain(timeout)
        with contextlib.suppress(Exception):  # the daemon's final commit reports it
            await self.journal.committed()

    def submit(self, specs: Sequence[JobSpec], on_stored: OnStored) -> None:
        """See `Intake.submit`."""
        self.intake.submit(specs, on_stored)

    # finishing -----------------------------------------------------------------------------

    def record_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """Record how an attempt ended and schedule what follows (a retry, the next link)."""
        try:
            recorded = outcomes.record(self.config, self.store, self.log, job, result)
        except StaleAttempt:
            # Fencing: this node lost its lease meanwhile, and another reclaimed the job.
            self.log.warning(
                job.label,
                f"job {job.id}: attempt {job.attempts} ended ({result.outcome.value}) after "
                f"its node {job.owner} lost the job to another; not recorded",
            )
            self.actions.attempt_lost(job.id)
            return
        for listener in self.attempt_listeners:
            listener(job, result)
        done = recorded.job
        if done.state.is_final:
            self.finishes.add(result.finished_at)
        if recorded.retry_at is not None:
            self.dispatcher.due.add(recorded.retry_at)
        elif done.state is JobState.QUEUED:
            self.dispatcher.notice_work()
        for released in (recorded.released, recorded.released_callback):
            if released is not None:
                self.dispatcher.notice_work()
                self.publisher.later(released)
        for link_id in recorded.cancelled_links:
            self.publisher.later_by_id(link_id)
        self.publisher.later(done, result.outcome)
        self.actions.attempt_recorded(job.id)

    def adopted(
        self, entries: Sequence[tuple[WaitingEntry, JobState]], job_ids: Sequence[int]
    ) -> None:
        """Jobs taken over from a fallback drainer (bgjobd.spoolimport), committed: the
        queued and scheduled ones are ours to claim, and whoever watches them hears."""
        for entry, state in entries:
            if state is JobState.SCHEDULED:
                self.dispatcher.due.add(entry.run_at)
        for job_id in job_ids:
            self.publisher.later_by_id(job_id)
        self.wake()

    # nodes ---------------------------------------------------------------------------------

    def reclaim(self, node: str, why: str) -> int:
        """The running jobs of a node that is gone: each attempt counts as interrupted, and
        the job goes on by its retry rules, here or on any node. Returns how many."""
        jobs = self.store.running(node)
        now = time.time()
        for job in jobs:
            started = job.started_at.timestamp() if job.started_at else now
            self.log.warning(job.label, f"job {job.id}: reclaimed from node {node} ({why})")
            self.record_attempt(
                job,
                AttemptResult(
                    Outcome.INTERRUPTED,
                    started,
                    now,
                    job.worker_pid,
                    error=ErrorInfo(
                        type="Interrupted",
                        message=f"its node {node} {why}",
                        hierarchy=["Interrupted"],
                    ),
                ),
            )
        return len(jobs)

    def abandon_attempts(self, why: str) -> int:
        """This node lost its lease: another node has (or may any moment have) reclaimed
        its jobs, so every attempt here is stopped; their ends will be refused as stale.
        Those of jobs claimed here after the reclaim (nobody reclaimed them) end as
        interrupted, given back: never cancelled, which is final."""
        running = list(self.attempts.running)
        for job_id in running:
            self.attempts.interrupt(job_id, why)
        return len(running)

    # reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobInfo:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no job {job_id}")
        return self.with_progress(job)

    def with_progress(self, job: JobInfo) -> JobInfo:
        """The job with its running attempt's latest progress, which only the daemon's
        memory holds (an attempt does not outlive its daemon)."""
        if job.state is not JobState.RUNNING:
            return job
        running = self.attempts.running.get(job.id)
        if running is None or running.progress is None:
            return job
        return replace_struct(
            job, progress=running.progress, progress_message=running.progress_message
        )

    def _progressed(self, running: RunningAttempt) -> None:
        """A progress update is an event of its own. Nothing is stored, but it goes out
        after the commit in progress, so it never comes before the event of the job's
        start (committed lazily) or after the event of its end."""
        self.publisher.later(self.with_progress(running.job))
