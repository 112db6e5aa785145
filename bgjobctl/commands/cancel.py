from __future__ import annotations

import argparse

from bgjobctl import bulk
from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, UsageError
from bgjobs.model import LIVE_STATES

HELP = (
    "cancel a job (or every job matching a filter): a waiting one never runs, a running one stops"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id, nargs="?")
    bulk.add_filter_arguments(parser, LIVE_STATES)


def run(ctx: CommandContext) -> int:
    args = ctx.args
    if (args.job_id is None) == (not bulk.has_filter(args)):
        raise UsageError("give a job ID or a filter (--class, --queue, --state, --search)")
    if args.job_id is None:
        return _cancel_matching(ctx)
    job = ctx.client.cancel(args.job_id)
    if ctx.json:
        ctx.print_json(job)
    else:
        ctx.print(f"job {job.id} {job.state.value}")
    return ExitCode.OK


def _cancel_matching(ctx: CommandContext) -> int:
    args = ctx.args
    states = bulk.states_of(args, LIVE_STATES)
    bulk.confirm(ctx, "cancel", states)
    # Sent when nothing matched too: the daemon says if the class is unknown.
    done = ctx.client.cancel_matching(states, args.class_name, args.search, args.queue)
    if ctx.json:
        ctx.print_json({"cancelled": done.done, "skipped": done.skipped})
    elif not done.done and not done.skipped:
        ctx.print(f"no job matches ({bulk.describe(args, states)}): nothing cancelled")
    else:
        skipped = f"; {done.skipped} skipped (they ended meanwhile)" if done.skipped else ""
        ctx.print(f"cancelled {done.done} job(s){skipped}")
    return ExitCode.OK
