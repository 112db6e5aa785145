from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import Error, ErrorCode, Submit, Submitted


def handle(ctx: Context, request: Submit) -> None:
    """Replies by itself, from inside the commit that stores the jobs (see Engine.submit)."""

    def answer(stored: list[tuple[list[int], bool]] | BaseException) -> None:
        if isinstance(stored, BaseException):
            # The journal has logged why; the client learns its jobs were not stored.
            ctx.send(
                Error(
                    rid=request.rid,
                    code=ErrorCode.INTERNAL,
                    message=f"the jobs were not stored: {stored}",
                )
            )
            return
        ctx.send(
            Submitted(
                rid=request.rid,
                ids=[ids[0] for ids, _ in stored],
                last_ids=[ids[-1] for ids, _ in stored],
                existing=[existed for _, existed in stored],
            )
        )

    ctx.engine.submit(request.jobs, answer)
