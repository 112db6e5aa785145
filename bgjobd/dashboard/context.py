"""What every dashboard handler works with, kept on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from bgjobd.dashboard.live import LiveHub
from bgjobd.dashboard.metrics import Metrics
from bgjobd.dashboard.recent import RecentFinishes
from bgjobd.dashboard.security import GUARD, Guard
from bgjobd.engine import Engine
from bgjobd.ops import Ops
from bgjobs.config import Config


@dataclass
class Dashboard:
    engine: Engine
    started_at: float
    live: LiveHub
    metrics: Metrics
    recent: RecentFinishes
    ops: Ops | None = None
    """Schedules and retention, for the schedules section."""

    @property
    def config(self) -> Config:
        """The running configuration (SIGHUP may replace it)."""
        return self.engine.config


DASHBOARD: Final = web.AppKey("dashboard", Dashboard)


def dashboard_of(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def guard_of(request: web.Request) -> Guard:
    return request.app[GUARD]
