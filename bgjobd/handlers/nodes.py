"""`ListNodes`: the processes sharing the store's queue, as the store has them."""

from __future__ import annotations

from datetime import UTC, datetime

from bgjobd.handlers.context import Context
from bgjobs.protocol import ListNodes, NodeList


async def handle(ctx: Context, request: ListNodes) -> NodeList:
    # Every row, expired ones included: a node past its lease is shown as such (it may be
    # paused, and its jobs about to be reclaimed) until a live node expires it. Whether it
    # is past is read on the leases' clock (the server's), not this host's.
    return NodeList(
        rid=request.rid,
        nodes=ctx.service.nodes(),
        answered_by=ctx.service.node_name,
        now=datetime.fromtimestamp(ctx.service.clock(), UTC),
    )
