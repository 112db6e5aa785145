from __future__ import annotations

import argparse

from bgjobctl import bulk
from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, UsageError
from bgjobs.model import JobState

HELP = "run a failed or cancelled job again (or every one matching a filter), with fresh attempts"
RETRYABLE = (JobState.CANCELLED, JobState.FAILED)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id, nargs="?")
    parser.add_argument(
        "--all-failed",
        action="store_true",
        help="retry every failed job (of --class, if given) without asking",
    )
    bulk.add_filter_arguments(parser, RETRYABLE)


def run(ctx: CommandContext) -> int:
    args = ctx.args
    filtered = bulk.has_filter(args)
    if args.all_failed:
        if args.job_id is not None or args.state or args.queue or args.search:
            raise UsageError(
                "--all-failed takes no job ID, --state, --queue or --search (use a filter)"
            )
        return _retry_failed(ctx)
    if (args.job_id is None) == (not filtered):
        raise UsageError(
            "give a job ID, --all-failed, or a filter (--class, --queue, --state, --search)"
        )
    if args.job_id is None:
        return _retry_matching(ctx)
    job = ctx.client.retry(args.job_id)
    if ctx.json:
        ctx.print_json(job)
    else:
        ctx.print(f"job {job.id} {job.state.value}")
    return ExitCode.OK


def _retry_failed(ctx: CommandContext) -> int:
    ids = ctx.client.retry_failed(ctx.args.class_name)
    if ctx.json:
        ctx.print_json({"ids": ids})
    else:
        listed = f": {', '.join(map(str, ids))}" if ids else ""
        ctx.print(f"retried {len(ids)} job(s){listed}")
    return ExitCode.OK


def _retry_matching(ctx: CommandContext) -> int:
    args = ctx.args
    states = bulk.states_of(args, [JobState.FAILED])
    bulk.confirm(ctx, "retry", states)
    # Sent when nothing matched too: the daemon says if the class is unknown.
    done = ctx.client.retry_matching(states, args.class_name, args.search, args.queue)
    if ctx.json:
        ctx.print_json({"retried": done.done, "skipped": done.skipped})
    elif not done.done and not done.skipped:
        ctx.print(f"no job matches ({bulk.describe(args, states)}): nothing retried")
    else:
        skipped = f"; {done.skipped} skipped (changed, or not retryable)" if done.skipped else ""
        ctx.print(f"retried {done.done} job(s){skipped}")
    return ExitCode.OK
