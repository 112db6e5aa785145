"""`bgjobctl logs`: a job's output or a log file, as it is on disk when piped; on a terminal
escaped (controls, C1 and bidi characters, newlines and tabs kept), so nothing a job printed
can move the cursor, retitle the window or reorder the text a reader sees.

A job's file (`logs/jobs/ID.log`) holds the output of its finished attempts. The running
attempt's output is in its worker's scratch file (see `bgjobd.capture`) until the attempt
ends, when it is appended to the job's file: the head at once, as it is printed, and the
tail (past half of `max_output_bytes`, kept in the worker's memory) only then. So a running
job's output is read from the scratch file, and each read counts only if the daemon still
says, after it, that the same attempt runs on the same worker (the worker's next attempt
reuses the file); what was shown of it is skipped when the job's file has it.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, NotFound
from bgjobs.model import JobInfo, JobState
from bgjobs.outputs import scratch_path
from bgjobs.protocol import ErrorCode
from bgjobs.text import escape_controls

HELP = "print a job's captured output, or the execution (or error) log"
FOLLOW_POLL_SECONDS = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id, nargs="?")
    parser.add_argument("--errors", action="store_true", help="the error log instead")
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing as it grows (for a job: until it ends)",
    )
    parser.add_argument(
        "--lines", "-n", type=int, default=0, help="only the last N lines of a log (0: all)"
    )


def run(ctx: CommandContext) -> int:
    args = ctx.args
    logs_dir = ctx.config.logs_dir
    if args.job_id is not None:
        path = logs_dir / "jobs" / f"{args.job_id}.log"
        job = ctx.client.get(args.job_id)  # also checks that the job exists
        if not path.exists() and not args.follow and job.state.is_final:
            # Said on stderr, so that the output itself stays empty for a pipe.
            print(f"job {job.id} ({job.state.value}) printed nothing", file=sys.stderr)
            return ExitCode.OK
        _job_output(ctx, path, _writer(), follow=args.follow)
        return ExitCode.OK
    path = logs_dir / ("background_jobs_errors.log" if args.errors else "background_jobs.log")
    if not path.exists() and not args.follow:
        raise NotFound(ErrorCode.NOT_FOUND, f"{path} does not exist yet")
    write = _writer()
    position = _print_from(path, _start(path, args.lines), write)
    while args.follow:
        time.sleep(FOLLOW_POLL_SECONDS)
        position = _print_from(path, position, write)
    return ExitCode.OK


def _job_output(
    ctx: CommandContext, path: Path, write: Callable[[bytes], None], *, follow: bool
) -> None:
    """The job's output so far, the running attempt's included; with `follow`, as it is
    printed, until the job ends."""
    position = _start(path, ctx.args.lines)
    while True:
        # Read before the file: a job is final only once its output is in the file.
        job = ctx.client.get(ctx.args.job_id)
        position = _print_from(path, position, write)
        if job.state.is_final:
            return
        if job.state is JobState.RUNNING and job.worker_pid:
            position += _attempt_output(ctx, job, path.parent, write, follow=follow)
        if not follow:
            return
        time.sleep(FOLLOW_POLL_SECONDS)


def _attempt_output(
    ctx: CommandContext,
    job: JobInfo,
    output_dir: Path,
    write: Callable[[bytes], None],
    *,
    follow: bool,
) -> int:
    """Print the running attempt's output from its worker's scratch file (once, or until
    the attempt ends); returns how many bytes were printed."""
    assert job.worker_pid is not None
    scratch = scratch_path(output_dir, job.worker_pid)
    shown = 0
    while True:
        data = _read_from(scratch, shown)
        now = ctx.client.get(job.id)
        if not (
            now.state is JobState.RUNNING
            and now.worker_pid == job.worker_pid
            and now.attempts == job.attempts
            and now.started_at == job.started_at
        ):
            return shown  # what was read may be the worker's next attempt's: the job's file has it
        if data:
            write(data)
            sys.stdout.flush()
            shown += len(data)
        if not follow:
            return shown
        time.sleep(FOLLOW_POLL_SECONDS)


def _read_from(path: Path, position: int) -> bytes:
    """What the file holds from `position` on; nothing when it cannot be read (gone, or
    another user's)."""
    try:
        with path.open("rb") as handle:
            handle.seek(position)
            return handle.read()
    except OSError:
        return b""


def _start(path: Path, lines: int) -> int:
    """Offset of the last `lines` lines (0 for all), found by reading backwards."""
    if lines <= 0 or not path.exists():
        return 0
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = position = handle.tell()
        found = 0
        while position > 0 and found <= lines:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            found += handle.read(step).count(b"\n")
        handle.seek(position)
        data = handle.read(end - position)
    cut = data.split(b"\n")
    return end - len(b"\n".join(cut[-(lines + 1) :]))


def _writer() -> Callable[[bytes], None]:
    """Where the bytes go: as they are into a pipe or a file (so that `logs ID > file`
    copies the output exactly); decoded and escaped onto a terminal. A character split
    across two reads while following is kept for the next read."""
    out = sys.stdout
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def raw(data: bytes) -> None:
        out.buffer.write(data)

    def escaped(data: bytes) -> None:
        text = escape_controls(decoder.decode(data), keep_lines=True)
        out.buffer.write(text.encode("utf-8", "backslashreplace"))

    return escaped if out.isatty() else raw


def _print_from(path: Path, position: int, write: Callable[[bytes], None]) -> int:
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size < position:
                position = 0  # rotated or truncated
            handle.seek(position)
            data = handle.read()
    except FileNotFoundError:
        return position
    if data:
        write(data)
        sys.stdout.flush()
    return position + len(data)
