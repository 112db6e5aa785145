from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import Ping, Pong


async def handle(ctx: Context, request: Ping) -> Pong:
    return Pong(rid=request.rid)
