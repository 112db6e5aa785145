"""`bgjobctl logs`: a job's output or a log file, as it is on disk when piped; on a terminal
escaped (controls, C1 and bidi characters, newlines and tabs kept), so nothing a job printed
can move the cursor, retitle the window or reorder the text a reader sees."""

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
        done = (lambda: ctx.client.get(args.job_id).state.is_final) if args.follow else None
    else:
        path = logs_dir / ("background_jobs_errors.log" if args.errors else "background_jobs.log")
        if not path.exists() and not args.follow:
            raise NotFound(ErrorCode.NOT_FOUND, f"{path} does not exist yet")
        done = None
    write = _writer()
    position = _print_from(path, _start(path, args.lines), write)
    while args.follow:
        finished = done() if done else False
        position = _print_from(path, position, write)
        if finished:
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    return ExitCode.OK


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
