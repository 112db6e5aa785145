"""`bgjobctl logs`: a job's output or a log file, as the daemon has it when piped; on a
terminal escaped (controls, C1 and bidi characters, newlines and tabs kept), so nothing a
job printed can move the cursor, retitle the window or reorder the text a reader sees.

Everything comes through the daemon's socket (`GetOutput`, `GetLog`), in chunks read from
an offset, so it works over TCP and from a machine (or a configuration) that does not share
the daemon's disk. A job's output is that of its finished attempts, then the running
attempt's output so far; with `--follow` it is asked for again from where the last chunk
ended until the job is final. A job that ran on another node shows what the store keeps of
each attempt (its end), which the daemon says on stderr.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, NotFound
from bgjobs.protocol import ErrorCode, OutputSource
from bgjobs.text import escape_controls

HELP = "print a job's captured output, or the execution (or error) log"
FOLLOW_POLL_SECONDS = 0.2
EMPTY_AGAIN_SECONDS = 0.02
"""A pause before asking again at once after a chunk that brought nothing (the running
attempt ended during the read): never a busy loop."""


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
    lines = max(args.lines, 0)
    write = _writer()
    if args.job_id is not None:
        _job_output(ctx, args.job_id, lines, write, follow=args.follow)
        return ExitCode.OK
    offset = 0
    while True:
        chunk = ctx.client.log(errors=args.errors, offset=offset, lines=lines)
        lines = 0  # only the first request starts from the last lines
        if not chunk.exists and not args.follow:
            raise NotFound(ErrorCode.NOT_FOUND, f"{chunk.path} does not exist yet")
        _emit(write, chunk.data)
        offset = chunk.next_offset
        if chunk.more:
            continue
        if not args.follow:
            return ExitCode.OK
        time.sleep(FOLLOW_POLL_SECONDS)


def _job_output(
    ctx: CommandContext, job: int, lines: int, write: Callable[[bytes], None], *, follow: bool
) -> None:
    """The job's output so far, the running attempt's included; with `follow`, as it is
    printed, until the job ends."""
    offset = 0
    shown = False
    noted: str | None = None
    while True:
        chunk = ctx.client.output(job, offset, lines=lines)
        lines = 0
        if chunk.note and chunk.note != noted:
            # On stderr, so that the output itself stays exact for a pipe.
            print(f"bgjobctl: {chunk.note}", file=sys.stderr, flush=True)
            noted = chunk.note
        _emit(write, chunk.data)
        shown = shown or bool(chunk.data)
        offset = chunk.next_offset
        if chunk.more:
            if not chunk.data:
                time.sleep(EMPTY_AGAIN_SECONDS)
            continue
        if not follow or not chunk.running:
            break
        time.sleep(FOLLOW_POLL_SECONDS)
    if not (shown or follow or chunk.running) and chunk.source is OutputSource.NONE:
        # Said on stderr, so that the output itself stays empty for a pipe.
        print(f"job {job} ({chunk.state.value}) printed nothing", file=sys.stderr)


def _emit(write: Callable[[bytes], None], data: bytes) -> None:
    if data:
        write(data)
        sys.stdout.flush()


def _writer() -> Callable[[bytes], None]:
    """Where the bytes go: as they are into a pipe or a file (so that `logs ID > file`
    copies the output exactly); decoded and escaped onto a terminal. A character split
    across two chunks is kept for the next one."""
    out = sys.stdout
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def raw(data: bytes) -> None:
        out.buffer.write(data)

    def escaped(data: bytes) -> None:
        text = escape_controls(decoder.decode(data), keep_lines=True)
        out.buffer.write(text.encode("utf-8", "backslashreplace"))

    return escaped if out.isatty() else raw
