"""Get: a job's whole record (params, result, every attempt), and its chain's links and its
batch's members as summaries. The reply may be larger than a request (up to
`MAX_REPLY_FRAME_BYTES`); a record with so many attempts that it would not fit has its
earlier attempts' errors cut first, and a reply that still does not fit is a `TOO_LARGE`
error rather than a frame the client would refuse."""

from __future__ import annotations

from typing import Final

import msgspec

from bgjobd.handlers.context import Context
from bgjobs.errors import TooLarge
from bgjobs.model import AttemptInfo, JobInfo
from bgjobs.protocol import MAX_REPLY_FRAME_BYTES, ErrorCode, Get, JobReply
from bgjobs.sizes import format_size
from bgjobs.summary import summarize

_FULL_ATTEMPTS: Final = 3
"""The latest attempts that keep their whole traceback when a record must be trimmed."""
_EARLIER_TRACEBACK: Final = 2048
"""Characters kept of an earlier attempt's traceback (its end: where it was raised)."""
_EARLIER_MESSAGE: Final = 1024

_encoder = msgspec.msgpack.Encoder()


async def handle(ctx: Context, request: Get) -> JobReply:
    job = ctx.service.job(request.job_id)
    chain = []
    if request.with_chain and job.chain_id is not None:
        chain = [summarize(link) for link in ctx.service.chain(job.chain_id)]
    batch = []
    if request.with_batch and job.batch_id is not None:
        batch = [summarize(member) for member in ctx.service.batch_members(job.batch_id)]
    reply = JobReply(rid=request.rid, job=job, chain=chain, batch=batch)
    size = len(_encoder.encode(reply))
    if size <= MAX_REPLY_FRAME_BYTES:
        return reply
    reply = JobReply(rid=request.rid, job=_trimmed(job), chain=chain, batch=batch)
    size = len(_encoder.encode(reply))
    if size <= MAX_REPLY_FRAME_BYTES:
        return reply
    raise TooLarge(
        ErrorCode.TOO_LARGE,
        f"job {job.id}'s record is {format_size(size)}, more than a reply carries "
        f"({format_size(MAX_REPLY_FRAME_BYTES)})",
    )


def _trimmed(job: JobInfo) -> JobInfo:
    """The record with the errors of all but its latest attempts cut: a traceback to its
    end, a message to its start."""
    keep_from = len(job.history) - _FULL_ATTEMPTS
    history = [
        _cut_error(attempt) if index < keep_from else attempt
        for index, attempt in enumerate(job.history)
    ]
    return msgspec.structs.replace(job, history=history)


def _cut_error(attempt: AttemptInfo) -> AttemptInfo:
    error = attempt.error
    if error is None or (
        len(error.traceback) <= _EARLIER_TRACEBACK and len(error.message) <= _EARLIER_MESSAGE
    ):
        return attempt
    cut = msgspec.structs.replace(
        error,
        message=error.message[:_EARLIER_MESSAGE],
        traceback=error.traceback[-_EARLIER_TRACEBACK:],
    )
    return msgspec.structs.replace(attempt, error=cut)
