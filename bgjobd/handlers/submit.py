"""`Submit`: the jobs stored (all or none), answered once committed.

The one handler that is not `async def handle(...) -> Reply`: the hottest request replies
from inside the commit that stores its jobs, through `ctx.send`, with no task and no hop
through the event loop. Measured (bench/compare.py, w2, 3 rounds of 2,000 submits): as a
coroutine awaiting its commit, the median submit took 1.5x as long and the daemon spent
17 % more CPU per job. `handlers.submit_at_once` is its route.

A submit whose key another transaction holds, still open (an application's `enqueue_in`
of the same key on PostgreSQL), is tried again every KEY_HELD_RETRY_SECONDS, the loop free
in between, until that transaction ends or KEY_HELD_PATIENCE_SECONDS pass: the client
waits as it would for the same INSERT of its own, and no node stalls meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Final

from bgjobd.handlers.context import Context
from bgjobd.intake import Stored
from bgjobd.store.offline import KeyHeld, StoreRetry
from bgjobd.store.sqlite import is_full
from bgjobs.errors import RequestFailed, StoreFull, StoreUnavailable
from bgjobs.protocol import Error, ErrorCode, Submit, Submitted

KEY_HELD_RETRY_SECONDS: Final = 0.1
KEY_HELD_PATIENCE_SECONDS: Final = 20.0
"""Within the clients' reply timeout (30 s): a key held longer is the application's
transaction stuck open, told as `store_unavailable`."""


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
    except KeyHeld as exc:
        ctx.service.submit_waits(request.jobs, exc)
        _again_later(ctx, request, answer, time.monotonic() + KEY_HELD_PATIENCE_SECONDS)
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


def _again_later(
    ctx: Context,
    request: Submit,
    answer: Callable[[Stored | BaseException], None],
    give_up_at: float,
) -> None:
    def again() -> None:
        try:
            ctx.service.submit(request.jobs, answer)
        except KeyHeld as exc:
            if time.monotonic() < give_up_at:
                _again_later(ctx, request, answer, give_up_at)
                return
            answer(_unavailable(f"the store is busy: {exc}"))
        except RequestFailed as exc:
            answer(exc)
        except StoreRetry as exc:
            answer(_unavailable(f"the store is unavailable: {exc}"))
        except Exception as exc:  # noqa: BLE001  # answered, as the server answers any failure
            answer(exc)

    asyncio.get_running_loop().call_later(KEY_HELD_RETRY_SECONDS, again)


def _unavailable(message: str) -> StoreUnavailable:
    return StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, message)
