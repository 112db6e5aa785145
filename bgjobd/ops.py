"""The daemon's periodic duties besides running jobs: cron schedules and retention, made
and reconfigured together (a schedule's latest job is never pruned)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bgjobd.clock import clock_from_env
from bgjobd.engine import Engine
from bgjobd.retention import Retention
from bgjobd.schedules import Schedules, key_prefix
from bgjobs.config import Config
from bgjobs.model import JobSpec


@dataclass
class Ops:
    schedules: Schedules
    retention: Retention

    @classmethod
    def of(cls, engine: Engine, say: Callable[[str], None]) -> Ops:
        def submit(spec: JobSpec, done: Callable[[BaseException | None], None]) -> None:
            engine.submit(
                [spec], lambda stored: done(stored if isinstance(stored, BaseException) else None)
            )

        schedules = Schedules(
            engine.config,
            submit=submit,
            latest_key=engine.store.latest_key,
            clock=clock_from_env(),
            say=say,
        )

        def keep_keys() -> frozenset[str]:
            latest = (engine.store.latest_key(key_prefix(s.name)) for s in schedules.all())
            return frozenset(key for key in latest if key is not None)

        retention = Retention(
            engine.config,
            engine.store,
            engine.journal,
            keep_keys=keep_keys,
            now=time.time,
            say=say,
        )
        return cls(schedules, retention)

    def start(self) -> None:
        self.schedules.start()
        self.retention.start()

    async def stop(self) -> None:
        await self.schedules.stop()
        await self.retention.stop()

    def reconfigure(self, config: Config) -> None:
        self.schedules.reconfigure(config)
        self.retention.config = config
