"""Starting and stopping the dashboard inside the daemon's event loop, and its routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from bgjobd.dashboard import actions, api, login, pages, render
from bgjobd.dashboard.context import DASHBOARD, Dashboard
from bgjobd.dashboard.live import LiveHub
from bgjobd.dashboard.metrics import Metrics
from bgjobd.dashboard.recent import RecentFinishes
from bgjobd.dashboard.security import GUARD, MIDDLEWARES, Guard, check_exposure
from bgjobd.listen import ensure_token, parse_address
from bgjobs.errors import BgjobsError, ConfigError

if TYPE_CHECKING:
    from bgjobd.app import Daemon

SHUTDOWN_SECONDS = 2.0
"""How long open requests may take to finish when the daemon stops."""

JOB = r"{job_id:\d{1,18}}"


def make_app(dashboard: Dashboard, guard: Guard) -> web.Application:
    app = web.Application(middlewares=MIDDLEWARES)
    app[DASHBOARD] = dashboard
    app[GUARD] = guard
    render.setup(app)
    router = app.router
    router.add_get("/", pages.root)
    router.add_get("/dashboard/jobs", pages.jobs)
    router.add_get(f"/dashboard/jobs/{JOB}", pages.job)
    router.add_get("/login", login.form)
    router.add_post("/login", login.submit)
    router.add_post("/logout", login.logout)
    router.add_get("/login/challenge", login.challenge)
    router.add_get("/api/jobs", api.list_jobs)
    router.add_get(f"/api/jobs/{JOB}", api.get_job)
    router.add_post(f"/api/jobs/{JOB}/cancel", actions.cancel)
    router.add_post(f"/api/jobs/{JOB}/retry", actions.retry)
    router.add_post("/api/jobs/retry-failed", actions.retry_failed)
    router.add_post("/api/jobs/cancel-matching", actions.cancel_matching)
    router.add_post("/api/jobs/retry-matching", actions.retry_matching)
    router.add_post("/api/pauses", actions.pause)
    router.add_post("/api/pauses/resume", actions.resume)
    router.add_get("/api/stats", api.stats)
    router.add_get("/api/overview", api.overview)
    router.add_get("/api/logs", api.logs)
    router.add_get("/api/events", api.events)
    router.add_get("/metrics", make_aiohttp_handler(dashboard.metrics.registry))
    router.add_static("/static/", render.STATIC)
    return app


class DashboardService:
    def __init__(
        self,
        runner: web.AppRunner,
        dashboard: Dashboard,
        url: str,
        unwatch: list[Callable[[], None]],
    ) -> None:
        self._runner = runner
        self._dashboard = dashboard
        self.url = url
        self._unwatch = unwatch

    async def stop(self) -> None:
        self._dashboard.live.close()
        for unwatch in self._unwatch:
            unwatch()
        await self._runner.cleanup()


async def start_dashboard(daemon: Daemon) -> DashboardService:
    """Serve the dashboard on `[dashboard] listen`, behind a login; ConfigError when that
    address is not loopback and no token was chosen (the daemon then refuses to start)."""
    settings = daemon.config.settings.dashboard
    service = daemon.service
    if service is None:
        raise RuntimeError("start_dashboard needs the daemon's queue service")
    try:
        host, port = parse_address(settings.listen, "dashboard.listen")
    except BgjobsError as exc:
        raise ConfigError(str(exc)) from None
    chosen = settings.token is not None or settings.token_file is not None
    token = settings.token or ensure_token(daemon.config.dashboard_token_path)
    check_exposure(host, token, chosen=chosen, public_metrics=settings.public_metrics)
    dashboard = Dashboard(
        service=service,
        live=LiveHub(service),
        metrics=Metrics(service),
        recent=RecentFinishes(),
    )
    guard = Guard(token=token, listen_host=host, port=port, public_metrics=settings.public_metrics)
    runner = web.AppRunner(
        make_app(dashboard, guard),
        access_log=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise BgjobsError(
            f"dashboard.listen: cannot listen on {settings.listen}: {exc.strerror or exc}"
        ) from None
    unwatch = [
        service.watch_attempts(dashboard.metrics.on_attempt),
        service.watch_attempts(dashboard.recent.on_attempt),
    ]
    bound_port = runner.addresses[0][1] if runner.addresses else port
    guard.hosts.port = bound_port
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/"
    daemon.say(f"dashboard on {url} (`bgjobctl dashboard` opens it logged in)")
    return DashboardService(runner, dashboard, url, unwatch)
