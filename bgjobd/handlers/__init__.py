"""One handler per request kind; `dispatch` is the single place that routes them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bgjobd.handlers import cancel, get, ping, retry, stats, submit, subscribe
from bgjobd.handlers import list as list_jobs
from bgjobd.handlers.context import Context
from bgjobs.protocol import (
    Cancel,
    Get,
    GetStats,
    Hello,
    ListJobs,
    Ping,
    Reply,
    Request,
    RetryFailed,
    RetryJob,
    Submit,
    Subscribe,
)


def dispatch(  # noqa: C901, PLR0911  # one arm per request kind
    ctx: Context, request: Request
) -> Reply | asyncio.Future[Reply] | Coroutine[Any, Any, Reply] | None:
    """The reply; or, for requests that wait (a kill), a future or a coroutine that makes
    it; or None from a handler that replies by itself through `ctx.send` (a submit, from
    inside its commit)."""
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
        case Hello():
            raise ValueError("the handshake happens once, first")
