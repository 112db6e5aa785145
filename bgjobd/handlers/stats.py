from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import GetStats, StatsReply


async def handle(ctx: Context, request: GetStats) -> StatsReply:
    return StatsReply(rid=request.rid, stats=ctx.service.stats())
