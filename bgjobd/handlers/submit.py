from __future__ import annotations

import sqlite3

from bgjobd.handlers.context import Context
from bgjobd.store.sqlite import is_full
from bgjobs.errors import RequestFailed, StoreFull, StoreUnavailable
from bgjobs.protocol import Error, ErrorCode, Submit, Submitted


def handle(ctx: Context, request: Submit) -> None:
    """Replies by itself, from inside the commit that stores the jobs (see Engine.submit)."""

    def answer(stored: list[tuple[list[int], bool]] | BaseException) -> None:
        if isinstance(stored, BaseException):
            # The journal has logged why; the client learns its jobs were not stored.
            code = stored.code if isinstance(stored, RequestFailed) else ErrorCode.INTERNAL
            ctx.send(
                Error(rid=request.rid, code=code, message=f"the jobs were not stored: {stored}")
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

    try:
        ctx.engine.submit(request.jobs, answer)
    except sqlite3.Error as exc:
        # A write failed under the submit itself (a full disk while SQLite spilled pages).
        if is_full(exc):
            raise StoreFull(ErrorCode.STORE_FULL, f"the store's disk is full: {exc}") from exc
        raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, f"the store failed: {exc}") from exc
