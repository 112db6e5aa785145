"""`bgjobctl watch ID`: follow a job until it ends, a line per change of state and per
progress update (`--json`: one JSON object per line, shaped like a job event)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import msgspec

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode
from bgjobs.model import JobEvent, JobInfo, JobState

HELP = "follow a job until it ends, printing its state changes and progress"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id)


def run(ctx: CommandContext) -> int:
    target: int = ctx.args.job_id
    # Subscribed before the job is read: no change between the two is missed.
    with ctx.client.events([target]) as stream:
        job = ctx.client.get(target)
        _show(ctx, _as_event(job))
        while not job.state.is_final:
            event = next(stream)
            _show(ctx, event)
            if event.state.is_final:
                job = ctx.client.get(target)
    if not ctx.json:
        _summary(ctx, job)
    return ExitCode.OK if job.state is JobState.SUCCEEDED else ExitCode.FAILED


def _as_event(job: JobInfo) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        state=job.state,
        class_name=job.class_name,
        method=job.method,
        attempt=job.attempts,
        at=datetime.now(UTC),
        progress=job.progress,
        progress_message=job.progress_message,
    )


def _show(ctx: CommandContext, event: JobEvent) -> None:
    if ctx.json:
        ctx.print_json(_fields(event))
        return
    from bgjobctl.render import progress_text, safe

    stamp = event.at.astimezone().strftime("%H:%M:%S")
    parts = [stamp, f"#{event.job_id}", event.state.value, f"attempt {event.attempt}"]
    if event.outcome is not None and event.outcome.value != event.state.value:
        parts.append(f"({event.outcome.value})")
    if event.progress is not None:
        parts.append(progress_text(event.progress, event.progress_message))
    ctx.print(safe("  ".join(parts)))


def _summary(ctx: CommandContext, job: JobInfo) -> None:
    from bgjobctl.render import safe, short

    if job.state is JobState.SUCCEEDED:
        ctx.print(safe(f"result: {short(job.result, 2000)}"))
    elif job.error is not None:
        ctx.print(safe(f"error: {job.error.summary()}"))
    elif job.reason:
        ctx.print(safe(f"reason: {job.reason}"))


def _fields(event: JobEvent) -> dict[str, Any]:
    fields = msgspec.to_builtins(event)
    assert isinstance(fields, dict)
    return fields
