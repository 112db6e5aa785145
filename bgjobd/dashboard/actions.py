"""Cancel and retry, by job id, through the queue service's actions: exactly what `bgjobctl
cancel` and `bgjobctl retry` do. A form post (no script) is answered with a redirect back
to the page it came from; the page's script and API clients get JSON."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from aiohttp import web
from yarl import URL

from bgjobd.bulk import RETRYABLE
from bgjobd.dashboard.api import json_response
from bgjobd.dashboard.context import dashboard_of
from bgjobd.dashboard.filters import BadFilter, Filters, parse_filters
from bgjobd.dashboard.present import job_summary
from bgjobd.dashboard.render import safe_next
from bgjobd.dashboard.security import wants_html
from bgjobd.store.base import JobQuery
from bgjobs.errors import BadParams, InvalidState, NotFound
from bgjobs.model import LIVE_STATES, JobInfo, JobState, PauseKind

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


# pause and resume; bulk actions -------------------------------------------------------------

PAUSE_KINDS: Final = {kind.value: kind for kind in PauseKind}


async def pause(request: web.Request) -> web.StreamResponse:
    """Pause a class, a queue or all (the form's `kind` and `name`): stored, every node."""
    return await _pausing(request, resume=False)


async def resume(request: web.Request) -> web.StreamResponse:
    return await _pausing(request, resume=True)


async def _pausing(request: web.Request, *, resume: bool) -> web.StreamResponse:
    form = await request.post()
    kind = PAUSE_KINDS.get(str(form.get("kind", "")))
    name = str(form.get("name", ""))
    if kind is None or len(name) > MAX_CLASS_NAME:
        return json_response({"ok": False, "message": "kind: all, class or queue"}, status=400)
    service = dashboard_of(request).service
    try:
        if resume:
            await service.resume(kind, name)
        else:
            await service.pause(kind, name)
    except BadParams as exc:
        return await _answer(request, 400, str(exc), notice={"notice": "bad_filter", "count": "0"})
    paused = service.pauses()
    label = "all jobs" if kind is PauseKind.ALL else f"{kind.value} {name}"
    return await _answer(
        request,
        200,
        f"{'Resumed' if resume else 'Paused'} {label}.",
        notice={"notice": "resumed" if resume else "paused", "count": str(len(paused))},
        extra={"paused": [msgspec.to_builtins(pause) for pause in paused]},
    )


def bulk_query(filters: Filters, *, cancel: bool) -> JobQuery | None:
    """The jobs of the listing's filters that a bulk action may change (None: none may);
    without a state filter, every live job to cancel, the failed ones to retry."""
    allowed = LIVE_STATES if cancel else RETRYABLE
    default = sorted(LIVE_STATES) if cancel else [JobState.FAILED]
    states = [state for state in (filters.states or default) if state in allowed]
    if not states:
        return None
    return JobQuery(
        states=states,
        class_name=filters.class_name or None,
        search=filters.search or None,
        queue=filters.queue or None,
    )


async def cancel_matching(request: web.Request) -> web.StreamResponse:
    """Cancel every job of the posted filters (state, class, queue, q) that is not final."""
    return await _bulk(request, cancel=True)


async def retry_matching(request: web.Request) -> web.StreamResponse:
    """Queue again every failed (or, filtered so, cancelled) job of the posted filters."""
    return await _bulk(request, cancel=False)


async def _bulk(request: web.Request, *, cancel: bool) -> web.StreamResponse:
    form = await request.post()
    try:
        filters = parse_filters(
            {key: str(form.get(key, "")) for key in ("state", "class", "queue", "q")}
        )
    except BadFilter as exc:
        return json_response({"ok": False, "message": str(exc)}, status=400)
    query = bulk_query(filters, cancel=cancel)
    if query is None:
        return await _answer(
            request,
            400,
            "No job of that state can be " + ("cancelled." if cancel else "retried."),
            notice={"notice": "bad_filter", "count": "0"},
        )
    service = dashboard_of(request).service
    try:
        if cancel:
            report = await service.cancel_matching(query, CANCEL_REASON)
        else:
            report = await service.retry_matching(query)
    except BadParams as exc:
        return await _answer(request, 400, str(exc), notice={"notice": "bad_filter", "count": "0"})
    verb = "cancelled" if cancel else "queued again"
    return await _answer(
        request,
        200,
        f"{report.done} job(s) {verb}.",
        notice={
            "notice": "cancelled_matching" if cancel else "retried_matching",
            "count": str(report.done),
        },
        extra={"done": report.done, "skipped": report.skipped},
    )
