from __future__ import annotations

import argparse
from datetime import datetime

from bgjobctl.context import CommandContext
from bgjobctl.library import make_spec, result_of
from bgjobctl.render import safe
from bgjobs.errors import ExitCode, JobFailed, UsageError
from bgjobs.model import ChainLink
from bgjobs.params import parse_delay, parse_json_params, split_params

HELP = "submit a job (or a chain of jobs) to the daemon"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("class_name", metavar="CLASS")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument(
        "params",
        metavar="PARAMS",
        nargs="?",
        default="",
        help='comma-separated string parameters, e.g. "a,b"',
    )
    parser.add_argument("--json-params", metavar="JSON", help="typed parameters, a JSON array")
    parser.add_argument("--delay", metavar="SECONDS", help="run after this many seconds")
    parser.add_argument(
        "--at", metavar="ISO-TIME", help="run at this time (ISO 8601; without a zone, local time)"
    )
    parser.add_argument("--priority", choices=["high", "medium", "low"])
    parser.add_argument(
        "--queue",
        metavar="QUEUE",
        help="run it in this named queue ([queues.NAME]) instead of its class's",
    )
    parser.add_argument(
        "--then",
        metavar="CLASS:METHOD[:p1,p2]",
        action="append",
        default=[],
        help="run this job next, with the previous result first (repeatable)",
    )
    parser.add_argument(
        "--key",
        metavar="KEY",
        help="idempotency key: submitting the same key again gives the same job "
        "(default: a fresh unique key)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job (chain) to end; exit 1 if it did not succeed",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long"
    )


def parse_link(text: str) -> ChainLink:
    class_name, sep, rest = text.partition(":")
    method, _, params = rest.partition(":")
    if not sep or not class_name or not method:
        raise UsageError(f"--then {text!r}: expected CLASS:METHOD or CLASS:METHOD:p1,p2")
    return ChainLink(class_name, method, split_params(params))


def parse_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        # A local time at the edge of the calendar (year 1 or 9999) may not convert.
        return moment if moment.tzinfo else moment.astimezone()
    except (ValueError, OverflowError):
        raise UsageError(f"--at {text!r} is not an ISO 8601 time") from None


def run(ctx: CommandContext) -> int:
    args = ctx.args
    if args.json_params is not None and args.params:
        raise UsageError("give parameters either as PARAMS or with --json-params, not both")
    if args.delay is not None and args.at is not None:
        raise UsageError("give either --delay or --at, not both")
    params = (
        parse_json_params(args.json_params)
        if args.json_params is not None
        else split_params(args.params)
    )
    links = [parse_link(text) for text in args.then]
    spec = make_spec(
        args.class_name,
        args.method,
        params,
        parse_delay(args.delay),
        priority=args.priority,
        at=parse_at(args.at),
        then=[(link.class_name, link.method, link.params) for link in links],
        key=args.key,
        queue=args.queue,
    )
    submitted = ctx.client.submit([spec])
    job_id = submitted.ids[0]
    last_id = submitted.last_ids[0] if submitted.last_ids else job_id
    existed = bool(submitted.existing and submitted.existing[0])
    if not args.wait:
        if ctx.json:
            ctx.print_json({"id": job_id, "last_id": last_id, "existing": existed})
        else:
            ctx.print(
                f"job {job_id} {'already exists' if existed else 'submitted'}"
                + (f" (chain {job_id}..{last_id})" if last_id != job_id else "")
            )
        return ExitCode.OK
    return wait_and_report(ctx, last_id, args.timeout, f"job {last_id} succeeded")


def wait_and_report(ctx: CommandContext, job_id: int, timeout: float | None, done: str) -> int:
    """`--wait`: the job's record (JSON), or `DONE: result` / why it failed; the exit code."""
    job = ctx.client.wait(job_id, timeout)
    if ctx.json:
        ctx.print_json(job)
    try:
        result = result_of(job)
    except JobFailed as exc:
        if not ctx.json:
            ctx.print(safe(str(exc)))  # "job 5 (Class::method) failed: ValueError: ..."
        return ExitCode.FAILED
    if not ctx.json:
        ctx.print(safe(f"{done}: {_show(result)}"))
    return ExitCode.OK


def _show(value: object) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()
