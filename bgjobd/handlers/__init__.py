"""One handler per request kind; `dispatch` is the single place that routes them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bgjobd.handlers import cancel, get, logs, nodes, ops, ping, retry, stats, submit, subscribe
from bgjobd.handlers import list as list_jobs
from bgjobd.handlers.context import Context
from bgjobs.errors import RequestFailed
from bgjobs.protocol import (
    Cancel,
    Error,
    ErrorCode,
    Get,
    GetLog,
    GetOutput,
    GetStats,
    Hello,
    ListJobs,
    ListNodes,
    ListSchedules,
    Ping,
    Prune,
    Reply,
    Request,
    RetryFailed,
    RetryJob,
    Submit,
    Subscribe,
)

SHUTTING_DOWN = "the daemon is stopping and accepts no requests; nothing was done"


def dispatch(  # noqa: C901, PLR0911, PLR0912  # one arm per request kind
    ctx: Context, request: Request
) -> Reply | asyncio.Future[Reply] | Coroutine[Any, Any, Reply] | None:
    """The reply; or, for requests that wait (a kill), a future or a coroutine that makes
    it; or None from a handler that replies by itself through `ctx.send` (a submit, from
    inside its commit).

    Once the daemon has begun to stop, every request is refused with SHUTTING_DOWN (nothing
    done): clients read it as "unreachable" and fall back, where an error from a store being
    closed would reach the caller as a failure."""
    if ctx.engine.shutting_down:
        return Error(rid=request.rid, code=ErrorCode.SHUTTING_DOWN, message=SHUTTING_DOWN)
    match request:
        case Ping():
            return ping.handle(request)
        case Submit():
            submit.handle(ctx, request)
            return None
        case Get():
            return get.handle(ctx, request)
        case ListJobs():
            return list_jobs.handle(ctx, request)
        case Cancel():
            return cancel.handle(ctx, request)
        case RetryJob():
            return retry.handle(ctx, request)
        case RetryFailed():
            return retry.handle_all(ctx, request)
        case GetStats():
            return stats.handle(ctx, request)
        case Subscribe():
            return subscribe.handle(ctx, request)
        case ListSchedules():
            return ops.schedules(ctx, request)
        case Prune():
            return ops.prune(ctx, request)
        case ListNodes():
            return nodes.handle(ctx, request)
        case GetOutput():
            return logs.output(ctx, request)
        case GetLog():
            return logs.log(ctx, request)
        case Hello():
            raise RequestFailed(ErrorCode.BAD_REQUEST, "the handshake happens once, first")
