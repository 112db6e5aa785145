"""The wire protocol between `bgjobd` and its clients: the one place it is defined.

A connection carries frames: a 4-byte big-endian body length, then a msgpack body holding
one message of a tagged union. The client's first message is `Hello` (protocol version and,
over TCP, the token); every later request carries a request id (`rid`) that its reply
echoes, so a client may pipeline. `Subscribe` makes the daemon stream `Event` messages with
the subscribing request's id until the connection closes.
"""

from __future__ import annotations

import enum
import mmap
from datetime import datetime
from typing import Annotated, Final

import msgspec

from bgjobs.model import (
    JobEvent,
    JobInfo,
    JobSpec,
    JobState,
    NodeInfo,
    PauseInfo,
    PauseKind,
    Stats,
)

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Largest frame body either side accepts; a longer announced length closes the connection
before anything is allocated for it."""
MAX_REPLY_FRAME_BYTES: Final = 4 * MAX_FRAME_BYTES
"""Largest reply a client accepts. Larger than a request may be: a whole record carries its
params, its result and every attempt's error, each of which alone stays under the frame cap.
The daemon answers a reply that would still be larger with a `TOO_LARGE` error."""
HEADER_BYTES: Final = 4
MAX_JOB_ID: Final = 2**63 - 1
"""Ids, limits and offsets are signed 64-bit integers in every store: larger ones are
refused when a request is decoded."""
JobId = Annotated[int, msgspec.Meta(ge=0, le=MAX_JOB_ID)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_JOB_ID)]
HANDSHAKE_TIMEOUT: Final = 5.0
PREAUTH_MAX_FRAME_BYTES: Final = 64 * 1024
"""Largest frame the daemon reads before a connection's Hello is accepted (a Hello is a
few dozen bytes), so an unauthenticated peer cannot make it buffer more."""
SMALL_FRAME_BYTES: Final = 64 * 1024
"""Frames up to this size are read without asking the daemon's buffer budget."""
MAX_CHUNK_BYTES: Final = 1024 * 1024
"""Most bytes of output or log one `OutputChunk` or `LogChunk` carries, whatever the
request asks: a reply stays far below MAX_REPLY_FRAME_BYTES, and a client reads a long
file in several requests (`more`)."""


class ErrorCode(enum.StrEnum):
    """What went wrong, so a client can act on the kind of error (and pick an exit code)."""

    BAD_REQUEST = "bad_request"
    """Garbage, an unknown message, or a request before the handshake."""
    FRAME_TOO_LARGE = "frame_too_large"
    VERSION_MISMATCH = "version_mismatch"
    UNAUTHORIZED = "unauthorized"
    REFUSED = "refused"
    """The (class, method) pair is not allow-listed."""
    BAD_PARAMS = "bad_params"
    NOT_FOUND = "not_found"
    INVALID_STATE = "invalid_state"
    """E.g. retrying a job that has not failed."""
    TOO_LARGE = "too_large"
    """Params over `max_params_bytes` (or a record over what a message can carry)."""
    STORE_FULL = "store_full"
    """The store's disk is (nearly) full: nothing was stored; try again later."""
    STORE_UNAVAILABLE = "store_unavailable"
    """The store cannot be reached or was lost: nothing was stored."""
    SHUTTING_DOWN = "shutting_down"
    """The daemon is stopping: nothing was done; clients treat it as unreachable."""
    INTERNAL = "internal"


class _Message(msgspec.Struct, tag=True, kw_only=True):
    rid: int = 0


# Requests ---------------------------------------------------------------------------------


class Hello(_Message):
    version: int
    token: str | None = None
    client: str = ""


class Ping(_Message):
    pass


class Submit(_Message):
    jobs: list[JobSpec]


class Get(_Message):
    job_id: JobId
    with_chain: bool = False
    """Also return every link of the job's chain."""
    with_batch: bool = False
    """Also return every member of the job's batch (summaries, in submit order)."""


class ListJobs(_Message):
    states: list[JobState] = []
    class_name: str | None = None
    search: str | None = None
    """Matches a job id exactly, or a substring of the encoded params."""
    limit: Count = 50
    offset: Count = 0
    oldest_first: bool = False
    queue: str | None = None
    """Only jobs of this named queue."""


class Cancel(_Message):
    job_id: JobId


class RetryJob(_Message):
    job_id: JobId


class RetryFailed(_Message):
    """Retry every failed job (optionally of one class)."""

    class_name: str | None = None


class GetStats(_Message):
    pass


class Subscribe(_Message):
    job_ids: list[JobId] = []
    """Only events of these jobs; empty means every job."""


class ListSchedules(_Message):
    pass


class Prune(_Message):
    """Delete now what `[retention]` lets go (`dry_run`: only say what that would be)."""

    dry_run: bool = False


class ListNodes(_Message):
    """The nodes (daemons, `run_job.py` runners) registered in the store's queue."""


class GetOutput(_Message):
    """A job's captured output from `offset` on (an offset into the stream a previous
    `OutputChunk` gave), every attempt's, the running one's too. `--follow` asks again
    from `next_offset` until the reply is neither `running` nor has `more`."""

    job_id: JobId
    offset: Count = 0
    lines: Count = 0
    """With N > 0: from the start of the last N lines instead of `offset`."""
    max_bytes: Count = MAX_CHUNK_BYTES
    """At most this many bytes (and never more than MAX_CHUNK_BYTES)."""


class GetLog(_Message):
    """The daemon's execution log (or error log) from `offset` on."""

    errors: bool = False
    offset: Count = 0
    lines: Count = 0
    """With N > 0: from the start of the last N lines instead of `offset`."""
    max_bytes: Count = MAX_CHUNK_BYTES


class PauseJobs(_Message):
    """Pause claiming the jobs of a class, of a queue, or all (`name` empty); with `resume`,
    remove that pause. Stored: it holds on every node sharing the store."""

    kind: PauseKind
    name: str = ""
    resume: bool = False


class CancelMatching(_Message):
    """Cancel every job that matches (as `ListJobs` filters), running ones too; `states`
    empty means every live state (final ones are refused)."""

    states: list[JobState] = []
    class_name: str | None = None
    search: str | None = None
    queue: str | None = None


class RetryMatching(_Message):
    """Queue again every job that matches; `states` empty means failed (only failed and
    cancelled are allowed)."""

    states: list[JobState] = []
    class_name: str | None = None
    search: str | None = None
    queue: str | None = None


Request = (
    Hello
    | Ping
    | Submit
    | Get
    | ListJobs
    | Cancel
    | RetryJob
    | RetryFailed
    | GetStats
    | Subscribe
    | ListSchedules
    | Prune
    | ListNodes
    | GetOutput
    | GetLog
    | PauseJobs
    | CancelMatching
    | RetryMatching
)


# Replies ----------------------------------------------------------------------------------


class Welcome(_Message):
    version: int
    server_version: str
    pid: int


class Pong(_Message):
    pass


class Submitted(_Message):
    ids: list[int]
    """Per submitted job, its id (the first link's, for a chain)."""
    last_ids: list[int] = []
    """Per submitted job, the id of its chain's last link (its own id without a chain; a
    batch's callback's for a batch, which is also its id)."""
    existing: list[bool] = []
    """Per id: True when a `unique` job matched one already waiting or running."""


class JobReply(_Message):
    job: JobInfo
    chain: list[JobInfo] = []
    batch: list[JobInfo] = []
    """With `Get.with_batch`: the members of the job's batch (not its callback)."""


class JobList(_Message):
    jobs: list[JobInfo]
    total: int


class RetriedMany(_Message):
    ids: list[int]


class StatsReply(_Message):
    stats: Stats


class Subscribed(_Message):
    pass


class Event(_Message):
    event: JobEvent


class Error(_Message):
    code: ErrorCode
    message: str


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    cron: str
    timezone: str
    class_name: str
    method: str
    missed: str
    next_run: datetime | None
    last_run: datetime | None
    """The latest tick that has a job in the store."""


class ScheduleList(_Message):
    schedules: list[ScheduleInfo]


class Pruned(_Message):
    dry_run: bool
    jobs: dict[str, int]
    """Jobs removed (or that would be) per final state."""
    attempts: int
    files: int


class NodeList(_Message):
    nodes: list[NodeInfo]
    """Every registered node, by name; one whose `lease_until` has passed is dead and about
    to be expired by a live one."""
    answered_by: str
    """The name of the node that answered (its `[daemon] node`)."""
    now: datetime
    """The answering node's clock, against which heartbeat ages are read (a client over TCP
    may run on a host whose clock differs)."""


class OutputSource(enum.StrEnum):
    """Where an `OutputChunk`'s bytes come from."""

    FILE = "file"
    """The job's output file on the answering node (and its running attempt's output)."""
    STORED = "stored"
    """The store's copy: the end of each attempt's output that printed anything (at most
    `bgjobd.capture.STORED_TAIL_BYTES` each), for a job whose output file the answering
    node does not have (the job ran on another node, or the file is gone)."""
    NONE = "none"
    """Nothing printed (yet), as far as this node and the store know."""


class OutputChunk(_Message):
    data: bytes
    offset: int
    """Where `data` starts: the requested offset, or the start of the last N lines, or 0
    when the stream is shorter than the requested offset (it was replaced)."""
    next_offset: int
    """What to ask for next."""
    more: bool
    """More bytes are there already: ask again at once."""
    running: bool
    """The job was not final when this was read: more may come (`--follow` asks again)."""
    state: JobState
    source: OutputSource
    note: str | None = None
    """Something the reader should know, e.g. that only the stored tails are shown."""


class LogChunk(_Message):
    data: bytes
    offset: int
    next_offset: int
    more: bool
    exists: bool
    """False when the log file does not exist (yet)."""
    path: str
    """The file on the daemon's host, for messages."""


class PauseReply(_Message):
    changed: bool
    """False: the pause was there already (or, to resume, was not)."""
    paused: list[PauseInfo]
    """The pauses in force now."""


class BulkDone(_Message):
    done: int
    """Jobs cancelled (or queued again)."""
    skipped: int
    """Matching jobs left as they were (they changed meanwhile, or may not be retried)."""


Reply = (
    Welcome
    | Pong
    | Submitted
    | JobReply
    | JobList
    | RetriedMany
    | StatsReply
    | Subscribed
    | Event
    | Error
    | ScheduleList
    | Pruned
    | NodeList
    | OutputChunk
    | LogChunk
    | PauseReply
    | BulkDone
)


# Framing ----------------------------------------------------------------------------------


class FrameError(Exception):
    """The peer sent something that is not a valid frame; the connection must close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameEncoder:
    """Encodes messages into frames, reusing one buffer."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._buffer = bytearray()

    def encode(self, message: msgspec.Struct) -> bytes:
        self._encoder.encode_into(message, self._buffer, HEADER_BYTES)
        body_length = len(self._buffer) - HEADER_BYTES
        self._buffer[:HEADER_BYTES] = body_length.to_bytes(HEADER_BYTES, "big")
        return bytes(self._buffer)


class FrameReader:
    """Splits a byte stream into frame bodies, checking each length before buffering it.

    Bodies up to SMALL_FRAME_BYTES gather in one running buffer. A larger body gets a
    buffer of its own of exactly its announced length, in anonymous memory that the
    kernel backs only as bytes arrive and takes back whole when the frame is handed out
    or the reader closed, so a half-sent frame holds what was sent, and nothing lingers
    for the allocator or the garbage collector to return.

    `feed` suits a peer that is trusted to send what it announces; the daemon instead
    `push`es and `pop`s, deciding before each large body (`wanted`) whether it has room.
    """

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        """May change between frames (the daemon raises it once the handshake is done)."""
        self._buffer = bytearray()
        self._large: mmap.mmap | None = None
        self._filled = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frame bodies now available, in order."""
        self.push(data)
        bodies: list[bytes] = []
        while (body := self.pop()) is not None:
            bodies.append(body)
        return bodies

    def push(self, data: bytes) -> None:
        """Add received bytes without looking at them."""
        large = self._large
        if large is not None and self._filled < len(large):
            take = min(len(large) - self._filled, len(data))
            with memoryview(data) as view:
                large[self._filled : self._filled + take] = view[:take]
                self._filled += take
                if take < len(data):
                    self._buffer += view[take:]
            return
        self._buffer += data

    @property
    def wanted(self) -> int:
        """The body length of the next frame when it is a large one whose buffer is not
        made yet (the next `pop` makes it), else 0 (also for a length over `max_frame`,
        which `pop` refuses)."""
        if self._large is not None or len(self._buffer) < HEADER_BYTES:
            return 0
        length = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
        return length if SMALL_FRAME_BYTES < length <= self.max_frame else 0

    def pop(self) -> bytes | None:
        """The next complete frame body, or None until more bytes arrive. Raises
        FrameError for a length over `max_frame`, before anything is kept for it."""
        if self._large is not None:
            return self._pop_large()
        if len(self._buffer) < HEADER_BYTES:
            return None
        length = int.from_bytes(self._buffer[:HEADER_BYTES], "big")
        if length > self.max_frame:
            raise FrameError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {length} bytes exceeds the limit of {self.max_frame}",
            )
        if length > SMALL_FRAME_BYTES:
            self._start_large(length)
            return self._pop_large()
        end = HEADER_BYTES + length
        if len(self._buffer) < end:
            return None
        with memoryview(self._buffer) as view:
            body = bytes(view[HEADER_BYTES:end])
        del self._buffer[:end]  # cheap: a bytearray drops its head without moving the rest
        return body

    def _start_large(self, length: int) -> None:
        large = mmap.mmap(-1, length)
        take = min(length, len(self._buffer) - HEADER_BYTES)
        with memoryview(self._buffer) as view:
            large[:take] = view[HEADER_BYTES : HEADER_BYTES + take]
        del self._buffer[: HEADER_BYTES + take]
        self._large, self._filled = large, take

    def _pop_large(self) -> bytes | None:
        large = self._large
        assert large is not None
        if self._filled < len(large):
            return None
        body = large[:]
        large.close()
        self._large, self._filled = None, 0
        return body

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF means truncation)."""
        return len(self._buffer) + self._filled

    def close(self) -> None:
        """Give back every buffer now (the connection is gone)."""
        if self._large is not None:
            self._large.close()
        self._large, self._filled = None, 0
        self._buffer = bytearray()


_request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_reply_decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)


def decode_request(body: bytes) -> Request:
    """The request in a frame; FrameError (BAD_REQUEST) for any frame that is not one."""
    try:
        return _request_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError, ValueError, MemoryError) as exc:
        # RecursionError: nesting deeper than the decoder goes (a few bytes make one).
        raise FrameError(ErrorCode.BAD_REQUEST, f"malformed request: {_reason(exc)}") from None


def decode_reply(body: bytes) -> Reply:
    """The reply in a frame; FrameError (BAD_REQUEST) for any frame that is not one."""
    try:
        return _reply_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError, ValueError, MemoryError) as exc:
        raise FrameError(ErrorCode.BAD_REQUEST, f"malformed reply: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]
