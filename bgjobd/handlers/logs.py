"""`GetOutput` and `GetLog`: a job's captured output and the daemon's log files, in chunks
(at most `MAX_CHUNK_BYTES` each), so that `bgjobctl logs` works from any client.

A job's output is one stream of bytes whose offsets are those of the job's output file
once every attempt has ended: the file (the finished attempts), then the running attempt's
output in its worker's scratch file (see `bgjobd.capture`), which is a prefix of what the
worker appends to the file when the attempt ends. A read from the scratch file counts only
if the same attempt still runs after it (the worker's next attempt reuses the file).

When this node does not have the file (the job ran on another node, or the file is gone)
the stream is made of the tails the store keeps of each attempt that printed, each after a
line saying how much of it only the other node has.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bgjobd import filechunks
from bgjobd.capture import STORED_TAIL_BYTES
from bgjobd.handlers.context import Context
from bgjobd.service import QueueService
from bgjobd.store.base import StoredOutput
from bgjobs.model import JobInfo, JobState
from bgjobs.outputs import scratch_path
from bgjobs.protocol import (
    MAX_CHUNK_BYTES,
    GetLog,
    GetOutput,
    LogChunk,
    OutputChunk,
    OutputSource,
)
from bgjobs.sizes import format_size


async def log(ctx: Context, request: GetLog) -> LogChunk:
    path = ctx.service.log_path(errors=request.errors)
    chunk = await asyncio.to_thread(
        filechunks.read_file,
        path,
        request.offset,
        request.lines,
        min(request.max_bytes, MAX_CHUNK_BYTES),
        restart=True,  # rotated: the new file from its start
    )
    if chunk is None:
        return LogChunk(
            rid=request.rid,
            data=b"",
            offset=0,
            next_offset=0,
            more=False,
            exists=False,
            path=str(path),
        )
    return LogChunk(
        rid=request.rid,
        data=chunk.data,
        offset=chunk.offset,
        next_offset=chunk.next_offset,
        more=chunk.more,
        exists=True,
        path=str(path),
    )


async def output(ctx: Context, request: GetOutput) -> OutputChunk:
    service = ctx.service
    # Read before the output: a job is final only once all its output is written.
    job = service.job(request.job_id)
    max_bytes = min(request.max_bytes, MAX_CHUNK_BYTES)
    path = service.output_path(job.id)
    elsewhere = service.output_elsewhere(job.id)
    runner = None if elsewhere else _runner_here(service, job)
    scratch = None if runner is None else scratch_path(path.parent, runner[0])
    if not elsewhere:
        local = await asyncio.to_thread(_read_local, path, scratch, request, max_bytes)
        if local is not None:
            if local.from_scratch and runner is not None and not runner[1]():
                # The attempt ended meanwhile: what was read may be the worker's next
                # attempt's; the file has this one's now.
                local = _Local(b"", request.offset, more=True, from_scratch=True)
            return _reply(
                request,
                job,
                data=local.data,
                offset=local.offset,
                more=local.more,
                source=OutputSource.FILE,
            )
    stored = service.stored_outputs(job.id)
    if stored:
        chunk = filechunks.read_bytes(_stream(stored), request.offset, request.lines, max_bytes)
        return _reply(
            request,
            job,
            data=chunk.data,
            offset=chunk.offset,
            more=chunk.more,
            source=OutputSource.STORED,
            note=_stored_note(job, sorted(elsewhere)),
        )
    away = job.state is JobState.RUNNING and runner is None and job.owner != service.node_name
    return _reply(
        request,
        job,
        data=b"",
        offset=request.offset,
        more=False,
        source=OutputSource.NONE,
        note=f"job {job.id} runs elsewhere ({job.owner}): its output shows once its attempt ends"
        if away
        else None,
    )


@dataclass(frozen=True)
class _Local:
    data: bytes
    offset: int
    more: bool
    """Ask again at once: more of the file is there, or the running attempt's output."""
    from_scratch: bool


def _read_local(
    path: Path, scratch: Path | None, request: GetOutput, max_bytes: int
) -> _Local | None:
    """The next chunk of the job's file or, past its end, of the running attempt's scratch
    file (when `scratch` is given); None when there is neither."""
    chunk = filechunks.read_file(path, request.offset, request.lines, max_bytes)
    if chunk is not None and (chunk.data or scratch is None):
        more = chunk.more or scratch is not None
        return _Local(chunk.data, chunk.offset, more, from_scratch=False)
    if scratch is None:
        return None
    size = 0 if chunk is None else chunk.size
    start = size if request.lines else max(request.offset, size)
    data = filechunks.read_from(scratch, start - size, max_bytes)
    return _Local(data, start, more=len(data) == max_bytes, from_scratch=True)


def _runner_here(service: QueueService, job: JobInfo) -> tuple[int, Callable[[], bool]] | None:
    """The pid of the worker running the job's attempt on this node, with a check that the
    same attempt still runs; None when no attempt of the job runs here."""
    running = service.attempt_here(job.id)
    if running is not None:
        return running.worker.pid, lambda: service.attempt_here(job.id) is running
    if (
        job.state is not JobState.RUNNING
        or job.worker_pid is None
        or job.owner == service.node_name
        or _host_of(job.owner) != socket.gethostname()
    ):
        return None
    # A run_job.py (or a fallback drainer) of this host: its worker's scratch file is in
    # the same directory when it uses the same configuration.
    pid = job.worker_pid

    def same_attempt() -> bool:
        now = service.find(job.id)
        return (
            now is not None
            and now.state is JobState.RUNNING
            and now.worker_pid == pid
            and now.attempts == job.attempts
            and now.started_at == job.started_at
        )

    return pid, same_attempt


def _host_of(owner: str) -> str:
    """The host in a one-shot runner's name (`run_job.py@HOST:PID`, a drainer's
    `bgjobd.drain@HOST:PID`); a node's name has none."""
    host = owner.partition("@")[2]
    name, _, pid = host.rpartition(":")
    return name if name and pid.isdigit() else host


def _stream(stored: list[StoredOutput]) -> bytes:
    parts: list[bytes] = []
    for kept in stored:
        output = kept.output
        missing = output.printed - len(output.tail)
        if missing > 0:
            which = f"attempt {kept.attempt}" + (
                f" of round {kept.round}" if kept.round > 1 else ""
            )
            parts.append(
                f"[... {format_size(missing)} of {which}'s output before this is only in "
                f"the output file on {output.origin} ...]\n".encode()
            )
        parts.append(output.tail)
    return b"".join(parts)


def _stored_note(job: JobInfo, elsewhere: list[str]) -> str:
    where = (
        f"job {job.id} ran on another node ({', '.join(elsewhere)})"
        if elsewhere
        else f"job {job.id}'s output file is not on this node"
    )
    return (
        f"{where}: shown from the store, which keeps the last "
        f"{format_size(STORED_TAIL_BYTES)} of each attempt's output"
    )


def _reply(
    request: GetOutput,
    job: JobInfo,
    *,
    data: bytes,
    offset: int,
    more: bool,
    source: OutputSource,
    note: str | None = None,
) -> OutputChunk:
    return OutputChunk(
        rid=request.rid,
        data=data,
        offset=offset,
        next_offset=offset + len(data),
        more=more,
        running=not job.state.is_final,
        state=job.state,
        source=source,
        note=note,
    )
