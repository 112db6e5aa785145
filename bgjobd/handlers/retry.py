from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import JobReply, RetriedMany, RetryFailed, RetryJob


async def handle(ctx: Context, request: RetryJob) -> JobReply:
    return JobReply(rid=request.rid, job=await ctx.service.retry(request.job_id))


async def handle_all(ctx: Context, request: RetryFailed) -> RetriedMany:
    return RetriedMany(rid=request.rid, ids=await ctx.service.retry_failed(request.class_name))
