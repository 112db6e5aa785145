from __future__ import annotations

from typing import Final

from bgjobd.handlers.context import Context
from bgjobd.store.base import JobQuery
from bgjobs.errors import BadParams
from bgjobs.protocol import ErrorCode, JobList, ListJobs
from bgjobs.summary import summarize
from bgjobs.text import without_surrogates

MAX_LIMIT: Final = 1000
MAX_OFFSET: Final = 2**62
"""Past every job a store can hold, and within an SQLite integer."""
MAX_TEXT: Final = 4096
"""Characters of a search or a class name."""


async def handle(ctx: Context, request: ListJobs) -> JobList:
    """A page of job summaries (params and results cut to a preview, no tracebacks), so
    that no record, however large, can make a page too large to send."""
    if not 0 < request.limit <= MAX_LIMIT or not 0 <= request.offset <= MAX_OFFSET:
        raise BadParams(
            ErrorCode.BAD_PARAMS, f"limit must be 1..{MAX_LIMIT} and offset 0..{MAX_OFFSET}"
        )
    longest = max(len(text or "") for text in (request.search, request.class_name, request.queue))
    if longest > MAX_TEXT:
        raise BadParams(
            ErrorCode.BAD_PARAMS, f"search, class and queue are limited to {MAX_TEXT} characters"
        )
    jobs, total = ctx.service.search(
        JobQuery(
            states=request.states,
            class_name=without_surrogates(request.class_name) if request.class_name else None,
            search=request.search,
            queue=without_surrogates(request.queue) if request.queue else None,
            limit=request.limit,
            offset=request.offset,
            oldest_first=request.oldest_first,
        )
    )
    return JobList(
        rid=request.rid,
        jobs=[summarize(job) for job in jobs],
        total=total,
    )
