from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobd.store.base import JobQuery
from bgjobs.errors import BadParams
from bgjobs.protocol import ErrorCode, JobList, ListJobs
from bgjobs.summary import summarize

MAX_LIMIT = 1000


def handle(ctx: Context, request: ListJobs) -> JobList:
    """A page of job summaries (params and results cut to a preview, no tracebacks), so
    that no record, however large, can make a page too large to send."""
    if not 0 < request.limit <= MAX_LIMIT or request.offset < 0:
        raise BadParams(ErrorCode.BAD_PARAMS, f"limit must be 1..{MAX_LIMIT} and offset >= 0")
    jobs, total = ctx.engine.store.search(
        JobQuery(
            states=request.states,
            class_name=request.class_name,
            search=request.search,
            limit=request.limit,
            offset=request.offset,
            oldest_first=request.oldest_first,
        )
    )
    return JobList(rid=request.rid, jobs=[summarize(job) for job in jobs], total=total)
