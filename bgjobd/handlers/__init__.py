"""One handler per request kind, each `async def handle(ctx, request) -> Reply`, routed by
`dispatch`; a handler's failure (a `RequestFailed`, a refusal, bad parameters) is raised,
and the server turns it into an `Error` reply.

The one second route, named as such: `submit_at_once`, the hot path of a submit, whose
reply leaves from inside its commit (see `handlers.submit` for why and what it saves)."""

from __future__ import annotations

from bgjobd.handlers import (
    cancel,
    get,
    logs,
    nodes,
    ops,
    pause,
    ping,
    retry,
    stats,
    submit,
    subscribe,
)
from bgjobd.handlers import list as list_jobs
from bgjobd.handlers.context import Context
from bgjobs.errors import RequestFailed
from bgjobs.protocol import (
    Cancel,
    CancelMatching,
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
    PauseJobs,
    Ping,
    Prune,
    Reply,
    Request,
    RetryFailed,
    RetryJob,
    RetryMatching,
    Submit,
    Subscribe,
)

SHUTTING_DOWN = "the daemon is stopping and accepts no requests; nothing was done"


def submit_at_once(ctx: Context, request: Request) -> bool:
    """A submit is stored here and now, and replies through `ctx.send` once committed;
    True if `request` was one (False: it goes through `dispatch`). Raises what refuses it,
    storing nothing."""
    if not isinstance(request, Submit) or not ctx.service.accepting:
        return False
    submit.handle(ctx, request)
    return True


async def dispatch(  # noqa: C901, PLR0911, PLR0912  # one arm per request kind
    ctx: Context, request: Request
) -> Reply:
    """The request's reply.

    Once the daemon has begun to stop, every request is refused with SHUTTING_DOWN (nothing
    done): clients read it as "unreachable" and fall back, where an error from a store being
    closed would reach the caller as a failure."""
    if not ctx.service.accepting:
        return Error(rid=request.rid, code=ErrorCode.SHUTTING_DOWN, message=SHUTTING_DOWN)
    match request:
        case Ping():
            return await ping.handle(ctx, request)
        case Submit():
            raise RequestFailed(ErrorCode.INTERNAL, "a submit takes `submit_at_once`")
        case Get():
            return await get.handle(ctx, request)
        case ListJobs():
            return await list_jobs.handle(ctx, request)
        case Cancel():
            return await cancel.handle(ctx, request)
        case RetryJob():
            return await retry.handle(ctx, request)
        case RetryFailed():
            return await retry.handle_all(ctx, request)
        case GetStats():
            return await stats.handle(ctx, request)
        case Subscribe():
            return await subscribe.handle(ctx, request)
        case ListSchedules():
            return await ops.schedules(ctx, request)
        case Prune():
            return await ops.prune(ctx, request)
        case ListNodes():
            return await nodes.handle(ctx, request)
        case GetOutput():
            return await logs.output(ctx, request)
        case GetLog():
            return await logs.log(ctx, request)
        case PauseJobs():
            return await pause.pause(ctx, request)
        case CancelMatching():
            return await pause.cancel_matching(ctx, request)
        case RetryMatching():
            return await pause.retry_matching(ctx, request)
        case Hello():
            raise RequestFailed(ErrorCode.BAD_REQUEST, "the handshake happens once, first")
