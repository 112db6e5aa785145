"""The JSON API the page's script reads (and anyone may script against), and the event
stream that tells the page when to read it again."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from aiohttp import web

from bgjobd.dashboard import queries
from bgjobd.dashboard.context import dashboard_of
from bgjobd.dashboard.filters import BadFilter, is_number, parse_filters
from bgjobd.dashboard.logtail import daemon_logs

MAX_WATCHED: Final = 100
LOG_LINES: Final = 60


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def json_error(status: int, message: str) -> web.Response:
    return json_response({"error": {"status": status, "message": message}}, status=status)


async def list_jobs(request: web.Request) -> web.StreamResponse:
    try:
        filters = parse_filters(request.query)
    except BadFilter as exc:
        return json_error(400, str(exc))
    return json_response(queries.listing(dashboard_of(request).service, filters))


async def get_job(request: web.Request) -> web.StreamResponse:
    job_id = int(request.match_info["job_id"])
    detail = await queries.detail(dashboard_of(request).service, job_id)
    if detail is None:
        return json_error(404, f"no job {job_id}")
    return json_response(detail)


async def stats(request: web.Request) -> web.StreamResponse:
    dashboard = dashboard_of(request)
    return json_response(queries.stats(dashboard.service))


async def overview(request: web.Request) -> web.StreamResponse:
    dashboard = dashboard_of(request)
    return json_response(queries.overview(dashboard.service, dashboard.recent))


async def logs(request: web.Request) -> web.StreamResponse:
    return json_response(await daemon_logs(dashboard_of(request).config.logs_dir, LOG_LINES))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `?job=ID` (repeatable) for some jobs only."""
    wanted = request.query.getall("job", [])
    if len(wanted) > MAX_WATCHED or not all(is_number(value, 18) for value in wanted):
        return json_error(400, f"job: up to {MAX_WATCHED} job ids")
    return await dashboard_of(request).live.stream(request, [int(value) for value in wanted])
