from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.model import JobEvent
from bgjobs.protocol import Event, Subscribe, Subscribed


async def handle(ctx: Context, request: Subscribe) -> Subscribed:
    rid = request.rid

    def forward(event: JobEvent) -> None:
        ctx.send(Event(rid=rid, event=event))

    ctx.subscriptions.append(ctx.service.subscribe(forward, request.job_ids))
    return Subscribed(rid=rid)
