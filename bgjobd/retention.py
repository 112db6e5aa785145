"""Retention: finished jobs, their attempts and their output files are deleted once they
are older than `[retention]` allows, in small batches off the hot path (one batch per
commit, the event loop free between them), every `[retention] interval` or at once by
`bgjobctl prune`. The store decides what may go (final, no live link in its chain, not a
schedule's latest tick), so it stays right with several daemons on one store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bgjobd.journal import Journal
from bgjobd.store.base import PruneRules, Store
from bgjobs.config import Config
from bgjobs.durations import parse_duration
from bgjobs.model import JobState

BATCH: Final = 500
"""Jobs deleted per commit: a few milliseconds of the store's lock."""
MAX_BATCHES: Final = 1000
"""Batches one pass makes at most; the next pass goes on."""
STARTS_BATCH: Final = 5000
"""Counted starts deleted per commit (small rows)."""
DRY_RUN_LIMIT: Final = 10_000_000
LOG_CHECK: Final = 1.0
"""Seconds between looks at the WAL's size."""
LOG_LIMIT: Final = 64 * 1024 * 1024
"""A WAL over this is checkpointed whole and truncated."""
SLOW_TRUNCATE: Final = 0.25
"""Seconds a WAL truncation may take before the daemon mentions it."""


def rules_of(config: Config, now: float, keep_keys: frozenset[str]) -> PruneRules:
    retention = config.settings.retention
    return PruneRules(
        finished_before={
            JobState.SUCCEEDED: now - parse_duration(retention.succeeded),
            JobState.FAILED: now - parse_duration(retention.failed),
            JobState.CANCELLED: now - parse_duration(retention.cancelled),
        },
        max_finished=retention.max_finished_jobs,
        keep_keys=keep_keys,
    )


@dataclass
class PruneReport:
    dry_run: bool
    by_state: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    """Rows of earlier attempts (a job's final attempt is in its own row)."""
    files: int = 0
    """Output files removed (or that would be)."""

    @property
    def jobs(self) -> int:
        return sum(self.by_state.values())


class Retention:
    def __init__(
        self,
        config: Config,
        store: Store,
        journal: Journal,
        *,
        keep_keys: Callable[[], frozenset[str]],
        now: Callable[[], float],
        say: Callable[[str], None],
    ) -> None:
        self.config = config
        self._store = store
        self._journal = journal
        self._keep_keys = keep_keys
        self._now = now
        self._say = say
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    def _output(self, job_id: int) -> Path:
        return self.config.job_output_dir / f"{job_id}.log"

    async def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Everything retention lets go now, batch by batch (or only counted)."""
        async with self._lock:
            report = PruneReport(dry_run)
            rules = rules_of(self.config, self._now(), self._keep_keys())
            if dry_run:
                jobs = self._store.prune(rules, DRY_RUN_LIMIT, dry_run=True)
                self._count(report, [job.job_id for job in jobs], [j.state for j in jobs])
                report.files = sum(self._output(job.job_id).exists() for job in jobs)
                return report
            for _ in range(MAX_BATCHES):
                ids = self._batch(rules, report)
                if not ids:
                    break
                await self._journal.committed()
                report.files += self._remove_outputs(ids)
                await asyncio.sleep(0)  # the loop's other work goes between batches
            await self._forget_starts()
            return report

    async def _forget_starts(self) -> None:
        """The rate limits' counted starts that no claim counts any more: the claims of a
        class drop their own old starts, but not those of a limit key (a customer) that
        never starts again, nor of a class whose rate was removed."""
        rates = self.config.rate_limits
        for _ in range(MAX_BATCHES):
            forgotten = self._store.forget_starts(rates, self._now(), STARTS_BATCH)
            await self._journal.committed()
            if forgotten < STARTS_BATCH:
                return
            await asyncio.sleep(0)

    def _batch(self, rules: PruneRules, report: PruneReport) -> list[int]:
        candidates = self._store.prune(rules, BATCH, dry_run=True)
        ids = [job.job_id for job in candidates]
        if not ids:
            return []
        self._count(report, ids, [job.state for job in candidates])
        self._store.prune(rules, BATCH)
        return ids

    def _count(self, report: PruneReport, ids: list[int], states: list[JobState]) -> None:
        report.by_state.update(state.value for state in states)
        report.attempts += self._store.attempt_rows(ids)

    def _remove_outputs(self, ids: list[int]) -> int:
        removed = 0
        for job_id in ids:
            with contextlib.suppress(FileNotFoundError):
                self._output(job_id).unlink()
                removed += 1
        return removed

    # the periodic pass ---------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._watch_log())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch_log(self) -> None:
        """Deleted rows' pages are reused inside the database file; the WAL, which a steady
        load keeps growing, is brought back to nothing once it passes LOG_LIMIT."""
        while True:
            await asyncio.sleep(LOG_CHECK)
            if self._store.log_size() > LOG_LIMIT:
                await _truncate_log_of(self._store, self._say)

    async def _run(self) -> None:
        while True:
            try:
                report = await self.prune()
            except Exception as exc:  # noqa: BLE001  # a store error: told, tried next time
                self._say(f"retention: pruning failed: {exc}")
            else:
                if report.jobs:
                    self._say(f"retention: pruned {describe(report)}")
            await asyncio.sleep(parse_duration(self.config.settings.retention.interval))


async def _truncate_log_of(store: Store, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    try:
        await asyncio.to_thread(store.truncate_log)
    except Exception as exc:  # noqa: BLE001  # the next pass tries again
        say(f"retention: truncating the WAL failed: {exc}")
        return
    took = time.monotonic() - started
    if took > SLOW_TRUNCATE:
        say(f"retention: truncating the WAL took {took * 1000:.0f} ms")


def describe(report: PruneReport) -> str:
    states = ", ".join(f"{count} {state}" for state, count in sorted(report.by_state.items()))
    return (
        f"{report.jobs} job(s) ({states or 'none'}), {report.attempts} earlier attempt(s), "
        f"{report.files} output file(s)"
    )
