from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import Submit, Submitted


async def handle(ctx: Context, request: Submit) -> Submitted:
    results = await ctx.engine.submit(request.jobs)
    return Submitted(
        rid=request.rid,
        ids=[ids[0] for ids, _ in results],
        last_ids=[ids[-1] for ids, _ in results],
        existing=[existed for _, existed in results],
    )
