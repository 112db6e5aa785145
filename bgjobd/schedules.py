"""Cron schedules: every tick of a `[schedules.NAME]` becomes one job.

Exactly once is the store's doing, not timing's: the job of a tick is submitted with the
idempotency key `schedule:NAME:<tick in UTC ISO>`, and the store's unique key makes any
second submit of that tick (after a restart, a reload, from another daemon on the same
store) return the first job. The last tick a schedule ran is likewise read from the store
(its greatest key), so nothing about schedules is kept in memory across restarts.

A tick seen up to GRACE late is still run (a restart or a busy moment does not lose it);
ticks later than that were missed (downtime, a suspended machine): `missed = "skip"` runs
none of them, `"run_once"` runs one job, under the latest missed tick's key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bgjobd.clock import Clock
from bgjobs.config import Config
from bgjobs.cron import Cron
from bgjobs.model import JobSpec
from bgjobs.settings import ScheduleSettings

KEY_PREFIX: Final = "schedule:"
GRACE: Final = timedelta(seconds=60)
"""How late a tick may be seen and still count as on time rather than missed."""
MAX_SLEEP: Final = 30.0
"""Wall-clock seconds between looks at the clock at most, so that a clock set forward or a
resumed machine is noticed."""
RETRY_AFTER: Final = 5.0
"""Seconds before a tick whose submit failed (a full disk) is tried again."""

Submitter = Callable[[JobSpec, Callable[[BaseException | None], None]], None]
"""Submits one job; calls back with None once it is stored, or with why it was not."""
LatestKey = Callable[[str], str | None]
"""The greatest idempotency key in the store that starts with the prefix."""


def tick_key(name: str, tick: datetime) -> str:
    return f"{key_prefix(name)}{tick.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def key_prefix(name: str) -> str:
    return f"{KEY_PREFIX}{name}:"


def tick_of_key(key: str) -> datetime:
    """The tick in a key made by `tick_key` (a schedule's name has no ':')."""
    stamp = key.split(":", 2)[2]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    name: str
    settings: ScheduleSettings
    cron: Cron

    @classmethod
    def of(cls, name: str, settings: ScheduleSettings) -> Schedule:
        return cls(name, settings, Cron.parse(settings.cron, settings.timezone))

    def job(self, tick: datetime) -> JobSpec:
        return JobSpec(
            class_name=self.settings.class_name,
            method=self.settings.method,
            params=list(self.settings.params),
            priority=self.settings.priority,
            key=tick_key(self.name, tick),
            queue=self.settings.queue,
        )

    def due(self, cursor: datetime, now: datetime) -> list[datetime]:
        """The ticks to submit now, the last one submitted or passed being `cursor`."""
        first = self.cron.next_after(cursor)
        if first is None or first > now:
            return []
        on_time_from = now - GRACE
        if first < on_time_from and self.settings.missed == "run_once":
            latest = self.cron.last_at_or_before(now)
            return [] if latest is None else [latest]
        ticks: list[datetime] = []
        tick = first if first >= on_time_from else self.cron.next_after(on_time_from)
        while tick is not None and tick <= now:
            ticks.append(tick)
            tick = self.cron.next_after(tick)
        return ticks


def schedules_of(config: Config) -> list[Schedule]:
    return [Schedule.of(name, table) for name, table in sorted(config.settings.schedules.items())]


@dataclass(frozen=True)
class ScheduleState:
    schedule: Schedule
    next_run: datetime | None
    last_run: datetime | None
    """The latest tick that has a job in the store."""


class Schedules:
    """Submits the due ticks of every schedule, waking at the next one."""

    def __init__(
        self,
        config: Config,
        *,
        submit: Submitter,
        latest_key: LatestKey,
        clock: Clock,
        say: Callable[[str], None],
    ) -> None:
        self._submit = submit
        self._latest_key = latest_key
        self.clock = clock
        self._say = say
        self._schedules: list[Schedule] = []
        self._cursors: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Take the configuration's schedules. One that stays keeps its place; a changed
        one begins at its next tick (the ticks of its old form were not missed); a new
        one starts from what the store knows of that name."""
        old = {schedule.name: schedule for schedule in self._schedules}
        self._schedules = schedules_of(config)
        for schedule in self._schedules:
            before = old.get(schedule.name)
            if before is None:
                self._cursors.pop(schedule.name, None)
            elif before != schedule:
                self._cursors[schedule.name] = self.now()
        self._wake.set()

    def all(self) -> list[Schedule]:
        return list(self._schedules)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    def run_due(self) -> datetime:
        """Submit what is due at the clock's now; returns that now."""
        now = self.now()
        for schedule in self._schedules:
            cursor = self._cursor(schedule, now)
            ticks = schedule.due(cursor, now)
            latest = schedule.cron.last_at_or_before(now)
            if latest is not None and latest > cursor:
                self._cursors[schedule.name] = latest
            # After the cursor moved: a failed submit moves it back before its tick.
            for tick in ticks:
                self._submit_tick(schedule, tick)
        return now

    def _cursor(self, schedule: Schedule, now: datetime) -> datetime:
        cursor = self._cursors.get(schedule.name)
        if cursor is None:
            last = self.last_run(schedule)
            # A schedule that never ran has missed nothing: it begins with its next tick.
            cursor = self._cursors[schedule.name] = last if last is not None else now
        return cursor

    def _submit_tick(self, schedule: Schedule, tick: datetime) -> None:
        def stored(failure: BaseException | None) -> None:
            if failure is None:
                return
            self._say(
                f"schedule {schedule.name}: the job of {tick_key(schedule.name, tick)} "
                f"was not stored ({failure}); trying again in {RETRY_AFTER:g} s"
            )
            # Back before the tick, so that the next pass submits it again (same key).
            earlier = tick - timedelta(microseconds=1)
            if self._cursors.get(schedule.name, earlier) > earlier:
                self._cursors[schedule.name] = earlier
            self._retry_soon()

        try:
            self._submit(schedule.job(tick), stored)
        except Exception as exc:  # noqa: BLE001  # refused now; told and tried again
            stored(exc)

    def _retry_soon(self) -> None:
        loop = asyncio.get_running_loop() if self._task is not None else None
        if loop is not None:
            loop.call_later(RETRY_AFTER, self._wake.set)

    def last_run(self, schedule: Schedule) -> datetime | None:
        key = self._latest_key(key_prefix(schedule.name))
        return None if key is None else tick_of_key(key)

    def states(self) -> list[ScheduleState]:
        now = self.now()
        return [
            ScheduleState(schedule, schedule.cron.next_after(now), self.last_run(schedule))
            for schedule in self._schedules
        ]

    def next_wake(self, looked_at: datetime) -> float | None:
        """Seconds on the schedules' clock from now until the first tick of any schedule
        after `looked_at`, the moment the last pass looked (negative when it is due
        already: a timer that woke a hair early, a pass that took longer than that hair,
        must not sleep through the tick it woke for)."""
        ticks = [
            tick for s in self._schedules if (tick := s.cron.next_after(looked_at)) is not None
        ]
        return None if not ticks else (min(ticks) - self.now()).total_seconds()

    # the timer -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                looked_at = self.run_due()
            except Exception as exc:  # noqa: BLE001  # a store error: told, tried again
                self._say(f"schedules: {exc}")
                await asyncio.sleep(RETRY_AFTER)
                continue
            wait = self.next_wake(looked_at)
            delay = MAX_SLEEP if wait is None else min(MAX_SLEEP, self.clock.real_seconds(wait))
            with contextlib.suppress(TimeoutError):
                # A timer a hair early finds nothing due and sleeps the rest again.
                await asyncio.wait_for(self._wake.wait(), max(delay, 0.001))
