from __future__ import annotations

import asyncio

from bgjobd.handlers.context import Context
from bgjobs.protocol import Reply, Submit, Submitted


def handle(ctx: Context, request: Submit) -> asyncio.Future[Reply]:
    accepted = ctx.engine.submit(request.jobs)
    reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    def answer(done: asyncio.Future[list[tuple[list[int], bool]]]) -> None:
        if done.exception() is not None:
            reply.set_exception(done.exception())  # type: ignore[arg-type]
            return
        results = done.result()
        reply.set_result(
            Submitted(
                rid=request.rid,
                ids=[ids[0] for ids, _ in results],
                last_ids=[ids[-1] for ids, _ in results],
                existing=[existed for _, existed in results],
            )
        )

    accepted.add_done_callback(answer)
    return reply
