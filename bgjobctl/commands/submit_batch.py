"""`bgjobctl submit-batch`: a batch of jobs and the callback that runs once they have all
ended, with the list of their results first."""

from __future__ import annotations

import argparse
from typing import Any

from bgjobctl.commands.submit import parse_at, parse_link, wait_and_report
from bgjobctl.context import CommandContext
from bgjobctl.library import LinkSpec, make_batch_spec
from bgjobs.errors import ExitCode, UsageError
from bgjobs.params import parse_delay

HELP = "submit a batch of jobs and a callback run once all have ended, with their results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "callback",
        metavar="CLASS:METHOD[:p1,p2]",
        help="the callback: runs once with the list of the jobs' results, then these params",
    )
    parser.add_argument(
        "--job",
        metavar="CLASS:METHOD[:p1,p2]",
        action="append",
        default=[],
        help="a job of the batch (repeatable)",
    )
    parser.add_argument(
        "--jobs-json",
        metavar="JSON",
        help="jobs of the batch as a JSON array of [class, method, [params]], e.g. "
        '\'[["Resize", "handle", ["a.png"]], ["Resize", "handle", ["b.png"]]]\'',
    )
    parser.add_argument(
        "--run-callback-on-failure",
        action="store_true",
        help="run the callback even if a job failed or was cancelled (its result is null); "
        "by default the callback is cancelled",
    )
    parser.add_argument("--delay", metavar="SECONDS", help="run the jobs after this many seconds")
    parser.add_argument("--at", metavar="ISO-TIME", help="run the jobs at this time (ISO 8601)")
    parser.add_argument("--priority", choices=["high", "medium", "low"])
    parser.add_argument(
        "--queue",
        metavar="QUEUE",
        help="run it in this named queue ([queues.NAME]) instead of its class's",
    )
    parser.add_argument("--key", metavar="KEY", help="idempotency key (default: a fresh one)")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for the callback to end; exit 1 if it did not succeed",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long"
    )


def parse_jobs_json(text: str) -> list[LinkSpec]:
    import msgspec

    try:
        value: Any = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UsageError(f"--jobs-json is not valid JSON: {exc}") from None
    jobs: list[LinkSpec] = []
    for item in value if isinstance(value, list) else [None]:
        if (
            not isinstance(item, list)
            or len(item) not in (2, 3)
            or not all(isinstance(name, str) for name in item[:2])
            or (len(item) == 3 and not isinstance(item[2], list))
        ):
            raise UsageError("--jobs-json: expected an array of [class, method, [params]]")
        jobs.append((item[0], item[1], item[2] if len(item) == 3 else []))
    return jobs


def run(ctx: CommandContext) -> int:
    args = ctx.args
    if args.delay is not None and args.at is not None:
        raise UsageError("give either --delay or --at, not both")
    links = [parse_link(text) for text in args.job]
    jobs: list[LinkSpec] = [(link.class_name, link.method, link.params) for link in links]
    if args.jobs_json is not None:
        jobs += parse_jobs_json(args.jobs_json)
    if not jobs:
        raise UsageError("a batch needs jobs: --job CLASS:METHOD[:p1,p2] or --jobs-json")
    callback = parse_link(args.callback)
    spec = make_batch_spec(
        jobs,
        (callback.class_name, callback.method, callback.params),
        run_callback_on_failure=args.run_callback_on_failure,
        delay=parse_delay(args.delay),
        priority=args.priority,
        at=parse_at(args.at),
        key=args.key,
        queue=args.queue,
    )
    submitted = ctx.client.submit([spec])
    batch_id = submitted.ids[0]
    existed = bool(submitted.existing and submitted.existing[0])
    if not args.wait:
        if ctx.json:
            ctx.print_json({"id": batch_id, "existing": existed})
        else:
            ctx.print(
                f"batch {batch_id} {'already exists' if existed else 'submitted'}: "
                f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, then callback job {batch_id}"
            )
        return ExitCode.OK
    return wait_and_report(
        ctx, batch_id, args.timeout, f"batch {batch_id} done: its callback succeeded"
    )
