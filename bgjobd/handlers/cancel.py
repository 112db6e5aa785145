from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import Cancel, JobReply


async def handle(ctx: Context, request: Cancel) -> JobReply:
    return JobReply(rid=request.rid, job=await ctx.service.cancel(request.job_id))
