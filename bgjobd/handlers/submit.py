"""`Submit`: the jobs stored (all or none), answered once committed.

The one handler that is not `async def handle(...) -> Reply`: the hottest request replies
from inside the commit that stores its jobs, through `ctx.send`, with no task and no hop
through the event loop. Measured (bench/compare.py, w2, 3 rounds of 2,000 submits): as a
coroutine awaiting its commit, the median submit took 1.5x as long and the daemon spent
17 % more CPU per job. `handlers.submit_at_once` is its route."""

from __future__ import annotations

import sqlite3

from bgjobd.handlers.context import Context
from bgjobd.intake import Stored
from bgjobd.store.offline import StoreRetry
from bgjobd.store.sqlite import is_full
from bgjobs.errors import RequestFailed, StoreFull, StoreUnavailable
from bgjobs.protocol import Error, ErrorCode, Submit, Submitted


def handle(ctx: Context, request: Submit) -> None:
    """Store the jobs; their reply goes out through `ctx.send` once committed. A refusal,
    bad parameters or a store that cannot take them now raise at once, storing nothing."""

    def answer(stored: Stored | BaseException) -> None:
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
        ctx.service.submit(request.jobs, answer)
    except StoreRetry as exc:
        # The PostgreSQL store lost its server (it reconnects): nothing was stored.
        raise StoreUnavailable(
            ErrorCode.STORE_UNAVAILABLE, f"the store is unavailable: {exc}"
        ) from exc
    except sqlite3.Error as exc:
        # A write failed under the submit itself (a full disk while SQLite spilled pages).
        if is_full(exc):
            raise StoreFull(ErrorCode.STORE_FULL, f"the store's disk is full: {exc}") from exc
        raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, f"the store failed: {exc}") from exc
