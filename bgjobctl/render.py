"""Human output: tables and job details (rich is imported only when something is shown).

Every text from a job or a user is shown through `safe`: controls, C1 and bidi characters
escaped, whether the output is a terminal or a pipe (a pipe is often a pager or a terminal
one step later); tracebacks keep their newlines and tabs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from bgjobs.model import JobInfo
from bgjobs.text import escape_controls


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(job: JobInfo) -> str:
    if job.started_at is None:
        return "-"
    end = job.finished_at or datetime.now(UTC)
    return f"{(end - job.started_at).total_seconds():.3f}s"


def age(seconds: float) -> str:
    """How long ago, in its two largest units: `2s ago`, `3m 05s ago`, `2h 10m ago`."""
    whole = max(int(seconds), 0)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h ago"
    if hours:
        return f"{hours}h {minutes:02d}m ago"
    if minutes:
        return f"{minutes}m {secs:02d}s ago"
    return f"{secs}s ago"


def safe(text: str, *, keep_lines: bool = False) -> str:
    """Text that cannot act on a terminal: see the module's docstring."""
    return escape_controls(text, keep_lines=keep_lines)


PREVIEW_MARK: Final = "[cut] "
"""Marks a listed job whose params, result or error the listing cut to a preview."""


def short(value: Any, width: int = 40) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    """A boxed table on a terminal; plain aligned columns when piped (greppable, unwrapped)."""
    title = safe(title)
    columns = [safe(cell) for cell in columns]
    rows = [[safe(cell) for cell in row] for row in rows]
    if not sys.stdout.isatty():
        widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
        for row in (columns, *rows):
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(markup=False, highlight=False).print(table)


def print_jobs(jobs: Sequence[JobInfo], total: int) -> None:
    rows = [
        (
            str(job.id),
            job.state.value,
            job.label,
            f"{PREVIEW_MARK}{short(job.params)}" if job.truncated else short(job.params),
            job.priority.value,
            f"{job.attempts}/{job.max_attempts}",
            when(job.run_at),
            duration(job),
            job.node or "-",
        )
        for job in jobs
    ]
    print_table(
        ("ID", "STATE", "JOB", "PARAMS", "PRIORITY", "ATTEMPTS", "DUE", "DURATION", "NODE"),
        rows,
        title=f"{len(jobs)} of {total} job(s)",
    )
    if any(job.truncated for job in jobs):
        # On stderr: the table on stdout stays greppable.
        print(
            f"{PREVIEW_MARK.strip()} a preview: `bgjobctl show ID` gives the whole record",
            file=sys.stderr,
        )


def progress_text(fraction: float, message: str | None) -> str:
    """A progress update as `40% imported 4,000 rows` (floored: 100% only when done)."""
    percent = f"{int(fraction * 100)}%"
    return f"{percent} {message}" if message else percent


def job_details(job: JobInfo) -> list[tuple[str, str]]:
    details = [
        ("id", str(job.id)),
        ("job", job.label),
        ("state", job.state.value + (f" ({job.reason})" if job.reason else "")),
    ]
    if job.progress is not None:
        details.append(("progress", progress_text(job.progress, job.progress_message)))
    details += [
        ("params", short(job.params, 2000)),
        ("priority", job.priority.value),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("timeout", f"{job.timeout:g}s"),
        ("created", when(job.created_at)),
        ("due", when(job.run_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("duration", duration(job)),
        ("node", job.node or "-"),
    ]
    if job.worker_pid:
        details.append(("worker pid", str(job.worker_pid)))
    if job.chain_id is not None:
        details.append(
            ("chain", f"link {job.chain_position} of {job.chain_length} (chain {job.chain_id})")
        )
    if job.batch_id is not None:
        details.append(("batch", _batch_role(job)))
    if job.state.value == "succeeded":
        details.append(("result", short(job.result, 2000)))
    if job.error is not None:
        details.append(("error", job.error.summary()))
    return details


def _batch_role(job: JobInfo) -> str:
    if not job.is_batch_callback:
        return f"a job of batch {job.batch_id} (`bgjobctl show {job.batch_id}`)"
    after = "every job succeeded" if not job.run_callback_on_failure else "every job ended"
    return f"batch {job.id}: this job is its callback, run once {after}"


def batch_counts(members: Sequence[JobInfo]) -> str:
    """ "100 jobs: 98 succeeded, 2 running" (states in their order of life)."""
    found: dict[str, int] = {}
    for member in members:
        found[member.state.value] = found.get(member.state.value, 0) + 1
    order = ("waiting", "scheduled", "queued", "running", "succeeded", "failed", "cancelled")
    parts = [f"{found[state]} {state}" for state in order if state in found]
    return f"{len(members)} job{'s' if len(members) != 1 else ''}: " + ", ".join(parts)


def print_batch(batch_id: int, members: Sequence[JobInfo]) -> None:
    print(f"batch {batch_id}: {batch_counts(members)}")
    print_table(
        ("#", "ID", "STATE", "JOB", "PARAMS", "RESULT"),
        [
            (
                str(number),
                str(member.id),
                member.state.value,
                member.label,
                short(member.params),
                short(member.result) if member.state.value == "succeeded" else "",
            )
            for number, member in enumerate(members, start=1)
        ],
        title=f"jobs of batch {batch_id}",
    )


def print_job(job: JobInfo, chain: Sequence[JobInfo] = (), batch: Sequence[JobInfo] = ()) -> None:
    width = max(len(key) for key, _ in job_details(job))
    for key, value in job_details(job):
        print(f"{key:>{width}}  {safe(value)}")
    if job.history:
        print_table(
            ("#", "OUTCOME", "STARTED", "DURATION", "NODE", "PID", "ERROR"),
            [
                (
                    attempt.label,
                    attempt.outcome.value if attempt.outcome else "running",
                    when(attempt.started_at),
                    "-" if attempt.duration is None else f"{attempt.duration:.3f}s",
                    attempt.node or "-",
                    str(attempt.worker_pid or "-"),
                    attempt.error.summary() if attempt.error else "",
                )
                for attempt in job.history
            ],
            title="attempts",
        )
    if chain:
        print_table(
            ("LINK", "ID", "STATE", "JOB", "PARAMS"),
            [
                (
                    str(link.chain_position),
                    str(link.id),
                    link.state.value,
                    link.label,
                    short(link.params),
                )
                for link in chain
            ],
            title=f"chain {chain[0].id}",
        )
    if batch and job.batch_id is not None:
        print_batch(job.batch_id, batch)
    if job.error is not None and job.error.traceback:
        print("\n" + safe(job.error.traceback.rstrip(), keep_lines=True))
