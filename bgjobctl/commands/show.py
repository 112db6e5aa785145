from __future__ import annotations

import argparse

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "show every field of a job, its attempts, its chain and its batch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id)


def run(ctx: CommandContext) -> int:
    reply = ctx.client.get_with_chain(ctx.args.job_id)
    if ctx.json:
        ctx.print_json({**_fields(reply.job), "chain": reply.chain, "batch": reply.batch})
    else:
        from bgjobctl.render import print_job

        print_job(reply.job, reply.chain, reply.batch)
    return ExitCode.OK


def _fields(job: object) -> dict[str, object]:
    import msgspec

    fields = msgspec.to_builtins(job)
    assert isinstance(fields, dict)
    return fields
