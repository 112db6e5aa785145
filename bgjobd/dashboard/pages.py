"""The HTML pages: the jobs page and a job's detail page."""

from __future__ import annotations

import time
from dataclasses import replace

from aiohttp import web

from bgjobd.dashboard import queries
from bgjobd.dashboard.actions import bulk_query
from bgjobd.dashboard.context import dashboard_of
from bgjobd.dashboard.filters import BadFilter, Filters, parse_filters
from bgjobd.dashboard.logtail import daemon_logs
from bgjobd.dashboard.render import DEFAULT_PAGE, error_page, notice, render
from bgjobd.service import QueueService

LOG_LINES = 60


async def root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(DEFAULT_PAGE)


async def jobs(request: web.Request) -> web.StreamResponse:
    dashboard = dashboard_of(request)
    try:
        filters = parse_filters(request.query)
    except BadFilter as exc:
        return error_page(request, 400, str(exc))
    now = time.time()
    service = dashboard.service
    return render(
        request,
        "jobs.html",
        {
            "filters": filters,
            "stats": queries.stats(service, now),
            "overview": None
            if filters.active
            else queries.overview(service, dashboard.recent, now),
            "listing": queries.listing(service, filters, now) if filters.active else None,
            "logs": await daemon_logs(dashboard.config.logs_dir, LOG_LINES),
            "classes": sorted(dashboard.config.settings.allowed_jobs),
            "queues": sorted(dashboard.config.queue_workers),
            "notice": notice(request.query),
            "schedules": service.schedules() if service.ops else [],
            "bulk": bulk_counts(service, filters) if filters.active else None,
            "confirm": request.query.get("confirm") if filters.active else None,
        },
    )


def bulk_counts(service: QueueService, filters: Filters) -> dict[str, int]:
    """How many jobs of the listing "Cancel all" and "Retry all" would change."""
    counts = {"cancel": 0, "retry": 0}
    for verb in counts:
        query = bulk_query(filters, cancel=verb == "cancel")
        if query is not None:
            counts[verb] = service.search(replace(query, limit=1))[1]
    return counts


async def job(request: web.Request) -> web.StreamResponse:
    job_id = int(request.match_info["job_id"])
    detail = await queries.detail(dashboard_of(request).service, job_id)
    if detail is None:
        return error_page(request, 404, f"There is no job #{job_id}.")
    return render(request, "job.html", {"detail": detail, "notice": notice(request.query)})
