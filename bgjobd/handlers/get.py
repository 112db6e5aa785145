from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import Get, JobReply


def handle(ctx: Context, request: Get) -> JobReply:
    job = ctx.engine.get(request.job_id)
    chain = []
    if request.with_chain and job.chain_id is not None:
        chain = ctx.engine.store.chain(job.chain_id)
    return JobReply(rid=request.rid, job=job, chain=chain)
