"""Cancel and retry, by job id, through the queue service's actions: exactly what `bgjobctl
cancel` and `bgjobctl retry` do. A form post (no script) is answered with a redirect back
to the page it came from; the page's script and API clients get JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from yarl import URL

from bgjobd.dashboard.api import json_response
from bgjobd.dashboard.context import dashboard_of
from bgjobd.dashboard.present import job_summary
from bgjobd.dashboard.render import safe_next
from bgjobd.dashboard.security import wants_html
from bgjobs.errors import InvalidState, NotFound
from bgjobs.model import JobInfo

CANCEL_REASON = "cancelled from the dashboard"
MAX_CLASS_NAME = 200


async def _answer(
    request: web.Request,
    status: int,
    message: str,
    *,
    notice: dict[str, str],
    job: JobInfo | None = None,
    extra: dict[str, Any] | None = None,
) -> web.StreamResponse:
    if wants_html(request):
        form = await request.post()
        target = URL(safe_next(form.get("next"))).update_query(notice)
        raise web.HTTPSeeOther(str(target))
    body: dict[str, Any] = {"ok": status < 400, "message": message}
    if job is not None:
        body["job"] = job_summary(job)
    if extra:
        body.update(extra)
    return json_response(body, status=status)


async def _refused(request: web.Request, job_id: int, exc: Exception) -> web.StreamResponse:
    if isinstance(exc, NotFound):
        return await _answer(
            request, 404, f"no job {job_id}", notice={"notice": "not_found", "job": str(job_id)}
        )
    current = dashboard_of(request).service.find(job_id)
    state = current.state.value if current else ""
    return await _answer(
        request,
        409,
        str(exc),
        notice={"notice": "refused", "job": str(job_id), "state": state},
        job=current,
    )


async def cancel(request: web.Request) -> web.StreamResponse:
    job_id = int(request.match_info["job_id"])
    try:
        job = await dashboard_of(request).service.cancel(job_id, CANCEL_REASON)
    except (NotFound, InvalidState) as exc:
        return await _refused(request, job_id, exc)
    return await _answer(
        request,
        200,
        f"Job #{job_id} cancelled.",
        notice={"notice": "cancelled", "job": str(job_id)},
        job=job,
    )


async def retry(request: web.Request) -> web.StreamResponse:
    job_id = int(request.match_info["job_id"])
    try:
        job = await dashboard_of(request).service.retry(job_id)
    except (NotFound, InvalidState) as exc:
        return await _refused(request, job_id, exc)
    return await _answer(
        request,
        200,
        f"Job #{job_id} queued again with fresh attempts.",
        notice={"notice": "retried", "job": str(job_id)},
        job=job,
    )


async def retry_failed(request: web.Request) -> web.StreamResponse:
    """Every failed job (of one class, when the form names one) goes again."""
    form = await request.post()
    class_name = form.get("class") or request.query.get("class") or None
    if class_name is not None and (
        not isinstance(class_name, str) or len(class_name) > MAX_CLASS_NAME
    ):
        return json_response({"ok": False, "message": "class: not a class name"}, status=400)
    ids = await dashboard_of(request).service.retry_failed(class_name)
    return await _answer(
        request,
        200,
        f"{len(ids)} failed job(s) queued again.",
        notice={"notice": "retried_all", "count": str(len(ids))},
        extra={"ids": ids},
    )
