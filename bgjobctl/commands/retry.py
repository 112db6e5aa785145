from __future__ import annotations

import argparse

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, UsageError

HELP = "run a failed or cancelled job again, with fresh attempts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id, nargs="?")
    parser.add_argument("--all-failed", action="store_true", help="retry every failed job")
    parser.add_argument(
        "--class", dest="class_name", metavar="CLASS", help="with --all-failed: only this class"
    )


def run(ctx: CommandContext) -> int:
    args = ctx.args
    if args.all_failed == (args.job_id is not None):
        raise UsageError("give a job ID or --all-failed")
    if args.all_failed:
        ids = ctx.client.retry_failed(args.class_name)
        if ctx.json:
            ctx.print_json({"ids": ids})
        else:
            listed = f": {', '.join(map(str, ids))}" if ids else ""
            ctx.print(f"retried {len(ids)} job(s){listed}")
        return ExitCode.OK
    job = ctx.client.retry(args.job_id)
    if ctx.json:
        ctx.print_json(job)
    else:
        ctx.print(f"job {job.id} {job.state.value}")
    return ExitCode.OK
