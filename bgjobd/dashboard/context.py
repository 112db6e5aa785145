"""What every dashboard handler works with, kept on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from bgjobd.dashboard.live import LiveHub
from bgjobd.dashboard.metrics import Metrics
from bgjobd.dashboard.recent import RecentFinishes
from bgjobd.dashboard.security import GUARD, Guard
from bgjobd.service import QueueService
from bgjobs.config import Config


@dataclass
class Dashboard:
    service: QueueService
    live: LiveHub
    metrics: Metrics
    recent: RecentFinishes

    @property
    def config(self) -> Config:
        """The running configuration (SIGHUP may replace it)."""
        return self.service.config


DASHBOARD: Final = web.AppKey("dashboard", Dashboard)


def dashboard_of(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def guard_of(request: web.Request) -> Guard:
    return request.app[GUARD]
