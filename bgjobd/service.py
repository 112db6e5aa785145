"""The queue as the daemon's request handlers and its dashboard see it: the one interface
they use, so that none reaches into the engine's parts (its store, its workers, its
journal) and the core can change behind it.

Reads answer from the store (the shared queue) with what only this node's memory holds
added: a running attempt's progress, this node's workers. Actions go through the engine,
which stores first and announces after the commit.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bgjobd.attempts import RunningAttempt
from bgjobd.bulk import RETRYABLE, Bulk, BulkReport
from bgjobd.engine import AttemptListener, Engine
from bgjobd.events import Listener
from bgjobd.intake import OnStored
from bgjobd.joblog import ERROR_LOG, MAIN_LOG
from bgjobd.ops import Ops
from bgjobd.outcomes import output_origin
from bgjobd.retention import PruneReport
from bgjobd.schedules import ScheduleState
from bgjobd.store.base import JobQuery, StoredOutput, WaitingEntry
from bgjobs.config import Config
from bgjobs.errors import BadParams, RequestFailed
from bgjobs.model import (
    DEFAULT_QUEUE,
    LIVE_STATES,
    QUEUE_NAME_PATTERN,
    JobInfo,
    JobSpec,
    JobState,
    NodeInfo,
    PauseInfo,
    PauseKind,
    QueueStats,
    RateStats,
    Stats,
    WorkerInfo,
)
from bgjobs.protocol import ErrorCode

CANCELLED_BY_REQUEST = "cancelled by request"
QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


class QueueService:
    def __init__(self, engine: Engine, started_at: float, ops: Ops | None = None) -> None:
        self._engine = engine
        self._store = engine.store
        self.started_at = started_at
        self.ops = ops
        """Schedules and retention (None in a daemon without them, or before they start)."""
        self._bulk = Bulk(
            store=engine.store, journal=engine.journal, actions=engine.actions, wake=engine.wake
        )

    @property
    def config(self) -> Config:
        """The running configuration (SIGHUP may replace it)."""
        return self._engine.config

    @property
    def accepting(self) -> bool:
        """False once the daemon has begun to stop: requests are refused from then on."""
        return not self._engine.shutting_down

    @property
    def node_name(self) -> str:
        return self._engine.owner

    # jobs ----------------------------------------------------------------------------------

    def job(self, job_id: int) -> JobInfo:
        """The job with its running attempt's progress; NotFound if there is none."""
        return self._engine.get(job_id)

    def find(self, job_id: int) -> JobInfo | None:
        """The job with its running attempt's progress, or None."""
        job = self._store.get(job_id)
        return None if job is None else self._engine.with_progress(job)

    def search(self, query: JobQuery) -> tuple[list[JobInfo], int]:
        """A page of the jobs matching, with their progress; and how many match in all."""
        jobs, total = self._store.search(query)
        return [self._engine.with_progress(job) for job in jobs], total

    def counts(self) -> dict[JobState, int]:
        return self._store.counts()

    def chain(self, chain_id: int) -> list[JobInfo]:
        return self._store.chain(chain_id)

    def batch_members(self, batch_id: int) -> list[JobInfo]:
        return self._store.batch_members(batch_id)

    # the queue -----------------------------------------------------------------------------

    def queued(self) -> list[WaitingEntry]:
        """Every queued job, in no particular order."""
        return self._store.queued()

    def queued_in_order(self, limit: int) -> list[WaitingEntry]:
        """The first queued jobs in the order claims take them (limits aside)."""
        return self._store.queued_in_order(limit)

    def scheduled(self, limit: int) -> list[WaitingEntry]:
        """The scheduled jobs due first."""
        return self._store.scheduled(None, limit)

    def running(self) -> list[JobInfo]:
        """Every running job, on any node."""
        return self._store.running()

    @property
    def limits(self) -> dict[str, int]:
        """Per-class concurrency limits."""
        return dict(self._engine.dispatcher.limits)

    # figures -------------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """This node's workers running an attempt (or about to)."""
        return self._engine.dispatcher.busy

    @property
    def worker_count(self) -> int:
        return self._engine.attempts.pool.size

    def queue_stats(self) -> list[QueueStats]:
        """Each queue this node knows or that has queued jobs, `default` first: this node's
        workers and busy ones, and its queued jobs over every node."""
        queued = self._store.queued_per_queue()
        slots = self._engine.dispatcher.queues
        names = sorted(set(slots) | set(queued), key=lambda name: (name != DEFAULT_QUEUE, name))
        return [
            QueueStats(
                name=name,
                workers=slots[name].size if name in slots else 0,
                busy=slots[name].busy if name in slots else 0,
                queued=queued.get(name, 0),
            )
            for name in names
        ]

    def stats(self) -> Stats:
        finished = self._engine.finishes.count()
        return Stats(
            counts={state.value: count for state, count in self._store.counts().items()},
            finished_last_minute=finished,
            throughput_per_second=finished / 60.0,
            workers=[
                WorkerInfo(
                    pid=worker.pid,
                    busy_with=worker.busy_with,
                    attempts_run=worker.attempts_run,
                    started_at=datetime.fromtimestamp(worker.started_at, UTC),
                )
                for worker in self._engine.attempts.pool.workers
            ],
            uptime=time.time() - self.started_at,
            daemon_pid=os.getpid(),
            queues=self.queue_stats(),
            paused=self._store.pauses(),
            rates=self.rate_stats(),
        )

    def rate_stats(self) -> list[RateStats]:
        """Each rate-limited class (by name): its rate and its window now, on every node."""
        rates = dict(sorted(self.config.rate_limits.items()))
        return [
            RateStats(
                class_name=use.class_name,
                rate=str(rates[use.class_name]),
                limit_by=self.config.limit_by_of(use.class_name),
                started=use.started,
                keys=use.keys,
                full=use.full,
                held=use.held,
                next_slot=None
                if use.next_slot is None
                else datetime.fromtimestamp(use.next_slot, UTC),
            )
            for use in self._store.rate_use(rates, time.time())
        ]

    def finished_per_minute(self, since: float) -> list[tuple[int, JobState, int]]:
        return self._store.finished_per_minute(since)

    def nodes(self) -> list[NodeInfo]:
        """Every node the store has, expired ones included."""
        return self._store.nodes()

    def clock(self) -> float:
        """Now on the clock the nodes' leases are read on (`Store.clock`)."""
        return self._store.clock()

    # logs and output -----------------------------------------------------------------------

    def log_path(self, *, errors: bool) -> Path:
        return self.config.logs_dir / (ERROR_LOG if errors else MAIN_LOG)

    def output_path(self, job_id: int) -> Path:
        """Where this node keeps the job's captured output."""
        return self.config.job_output_dir / f"{job_id}.log"

    def output_elsewhere(self, job_id: int) -> set[str]:
        """The other nodes (or runners) that hold some of the job's output."""
        return self._store.output_origins(job_id) - {output_origin(self.config)}

    def stored_outputs(self, job_id: int) -> list[StoredOutput]:
        """The tails of the job's attempts' output that the store keeps."""
        return self._store.stored_outputs(job_id)

    def attempt_here(self, job_id: int) -> RunningAttempt | None:
        """The job's attempt running on this node, if one is."""
        return self._engine.attempts.running.get(job_id)

    # schedules and retention ---------------------------------------------------------------

    def schedules(self) -> list[ScheduleState]:
        return self._ops().schedules.states()

    async def prune(self, *, dry_run: bool) -> PruneReport:
        return await self._ops().retention.prune(dry_run=dry_run)

    def _ops(self) -> Ops:
        if self.ops is None:
            raise RequestFailed(ErrorCode.INTERNAL, "schedules and retention are not running")
        return self.ops

    # actions -------------------------------------------------------------------------------

    def submit(self, specs: Sequence[JobSpec], on_stored: OnStored) -> None:
        """See `Intake.submit`."""
        self._engine.submit(specs, on_stored)

    def submit_waits(self, specs: Sequence[JobSpec], why: Exception) -> None:
        """Say that a submit waits for a transaction still open that holds a key of it."""
        first = specs[0]
        self._engine.log.warning(
            f"{first.class_name}::{first.method}",
            f"a submit waits for another transaction, still open, that holds its key ({why})",
        )

    async def cancel(self, job_id: int, reason: str = CANCELLED_BY_REQUEST) -> JobInfo:
        return await self._engine.actions.cancel(job_id, reason)

    async def retry(self, job_id: int) -> JobInfo:
        return await self._engine.actions.retry(job_id)

    async def retry_failed(self, class_name: str | None) -> list[int]:
        return await self._engine.actions.retry_failed(class_name)

    # pause and resume ----------------------------------------------------------------------

    def pauses(self) -> list[PauseInfo]:
        """The pauses in force on every node sharing the store."""
        return self._store.pauses()

    async def pause(self, kind: PauseKind, name: str) -> bool:
        """Store a pause (see `Store.pause`); False if it was there already."""
        name = self._pause_target(kind, name)
        added = self._store.pause(kind, name, time.time())
        await self._engine.journal.committed()
        return added

    async def resume(self, kind: PauseKind, name: str) -> bool:
        """Remove a pause; its jobs are claimed at once. False if there was none."""
        name = self._pause_target(kind, name)
        removed = self._store.resume(kind, name)
        await self._engine.journal.committed()
        self._engine.wake()
        return removed

    def _pause_target(self, kind: PauseKind, name: str) -> str:
        """The name a pause is stored under. BAD_PARAMS for a class or queue this node does
        not know (not configured, no job of it stored, not paused already): most likely a
        typo, which would otherwise be stored and hold back nothing."""
        if kind is PauseKind.ALL:
            return ""
        if kind is PauseKind.QUEUE:
            if not QUEUE_NAME.fullmatch(name):
                raise BadParams(ErrorCode.BAD_PARAMS, f"queue name {name!r}: not a name")
        elif not name or not name.isidentifier():
            raise BadParams(ErrorCode.BAD_PARAMS, f"{kind.value} name {name!r}: not a name")
        if any(pause.kind is kind and pause.name == name for pause in self._store.pauses()):
            return name  # paused already (perhaps by a node whose configuration has it)
        if kind is PauseKind.CLASS:
            self.check_class(name)
        else:
            self.check_queue(name)
        return name

    def check_queue(self, queue: str) -> None:
        """BAD_PARAMS for a queue that is neither configured here nor has a job stored."""
        if self.config.knows_queue(queue):
            return
        if self._store.matching_ids(JobQuery(queue=queue), 0, 1):
            return
        known = ", ".join(self.config.queue_workers)
        raise BadParams(
            ErrorCode.BAD_PARAMS,
            f"unknown queue {queue!r}: not configured (configured: {known}) "
            "and no job of it is stored",
        )

    def check_class(self, class_name: str) -> None:
        """BAD_PARAMS for a class that is neither allow-listed nor has a job in the store:
        most likely a typo, which would otherwise match nothing and say nothing."""
        if class_name in self.config.settings.allowed_jobs:
            return
        if self._store.matching_ids(JobQuery(class_name=class_name), 0, 1):
            return
        raise BadParams(
            ErrorCode.BAD_PARAMS,
            f"unknown class {class_name!r}: not in allowed_jobs and no job of it is stored",
        )

    # bulk actions --------------------------------------------------------------------------

    async def cancel_matching(
        self, query: JobQuery, reason: str = CANCELLED_BY_REQUEST
    ) -> BulkReport:
        """Cancel every matching job that is not final, running ones too (see `Bulk`)."""
        self._check_bulk(query, LIVE_STATES, "cancelled")
        return await self._bulk.cancel(query, reason)

    async def retry_matching(self, query: JobQuery) -> BulkReport:
        """Queue again every matching failed (or cancelled, if asked) job."""
        self._check_bulk(query, RETRYABLE, "retried")
        return await self._bulk.retry(query)

    def _check_bulk(self, query: JobQuery, allowed: Collection[JobState], verb: str) -> None:
        if query.class_name is not None:
            self.check_class(query.class_name)
        if query.queue is not None:
            self.check_queue(query.queue)
        wrong = [state.value for state in query.states if state not in allowed]
        if wrong:
            raise BadParams(ErrorCode.BAD_PARAMS, f"{', '.join(wrong)} jobs cannot be {verb}")

    # watching ------------------------------------------------------------------------------

    def subscribe(self, listener: Listener, job_ids: Collection[int] = ()) -> int:
        """Job events (of these jobs, or of all) until `unsubscribe` with the token."""
        return self._engine.events.subscribe(listener, job_ids)

    def unsubscribe(self, token: int) -> None:
        self._engine.events.unsubscribe(token)

    def watch_attempts(self, listener: AttemptListener) -> Callable[[], None]:
        """`listener` hears of every attempt's end on this node; returns how to stop."""
        listeners = self._engine.attempt_listeners
        listeners.append(listener)

        def stop() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return stop
