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
        )
        for job in jobs
    ]
    print_table(
        ("ID", "STATE", "JOB", "PARAMS", "PRIORITY", "ATTEMPTS", "DUE", "DURATION"),
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
        ("owner", job.owner or "-"),
    ]
    if job.worker_pid:
        details.append(("worker pid", str(job.worker_pid)))
    if job.chain_id is not None:
        details.append(
            ("chain", f"link {job.chain_position} of {job.chain_length} (chain {job.chain_id})")
        )
    if job.state.value == "succeeded":
        details.append(("result", short(job.result, 2000)))
    if job.error is not None:
        details.append(("error", job.error.summary()))
    return details


def print_job(job: JobInfo, chain: Sequence[JobInfo] = ()) -> None:
    width = max(len(key) for key, _ in job_details(job))
    for key, value in job_details(job):
        print(f"{key:>{width}}  {safe(value)}")
    if job.history:
        print_table(
            ("#", "OUTCOME", "STARTED", "DURATION", "PID", "ERROR"),
            [
                (
                    attempt.label,
                    attempt.outcome.value if attempt.outcome else "running",
                    when(attempt.started_at),
                    "-" if attempt.duration is None else f"{attempt.duration:.3f}s",
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
    if job.error is not None and job.error.traceback:
        print("\n" + safe(job.error.traceback.rstrip(), keep_lines=True))
