"""Pause and resume, and the bulk actions (cancel or retry every job matching a filter)."""

from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobd.store.base import JobQuery
from bgjobs.protocol import BulkDone, CancelMatching, PauseJobs, PauseReply, RetryMatching


async def pause(ctx: Context, request: PauseJobs) -> PauseReply:
    service = ctx.service
    if request.resume:
        changed = await service.resume(request.kind, request.name)
    else:
        changed = await service.pause(request.kind, request.name)
    return PauseReply(rid=request.rid, changed=changed, paused=service.pauses())


async def cancel_matching(ctx: Context, request: CancelMatching) -> BulkDone:
    query = JobQuery(
        states=request.states,
        class_name=request.class_name,
        search=request.search,
        queue=request.queue,
    )
    report = await ctx.service.cancel_matching(query)
    return BulkDone(rid=request.rid, done=report.done, skipped=report.skipped)


async def retry_matching(ctx: Context, request: RetryMatching) -> BulkDone:
    query = JobQuery(
        states=request.states,
        class_name=request.class_name,
        search=request.search,
        queue=request.queue,
    )
    report = await ctx.service.retry_matching(query)
    return BulkDone(rid=request.rid, done=report.done, skipped=report.skipped)
