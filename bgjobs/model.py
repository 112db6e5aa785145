"""The job data types shared by the daemon, the store, the client and the dashboard.

They travel on the wire inside protocol messages and are what the store hands back, so a
job looks the same everywhere. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec


class JobState(enum.StrEnum):
    """Where a job is in its life. Only the last three are final."""

    WAITING = "waiting"
    """A later link of a chain, waiting for the link before it to succeed."""
    SCHEDULED = "scheduled"
    """Waiting for its due time (a delay, `--at`, or the pause before a retry)."""
    QUEUED = "queued"
    """Due, waiting for a free worker; dispatched in priority order."""
    RUNNING = "running"
    """An attempt is executing in a worker process."""
    SUCCEEDED = "succeeded"
    """An attempt returned; its value is the job's result."""
    FAILED = "failed"
    """Every allowed attempt failed (or a rule said not to retry)."""
    CANCELLED = "cancelled"
    """Cancelled by a user, or because an earlier link of its chain did not succeed."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.WAITING, JobState.SCHEDULED, JobState.QUEUED})
LIVE_STATES = WAITING_STATES | {JobState.RUNNING}


class Priority(enum.StrEnum):
    """Dispatch priority of due jobs: every high job goes before any medium one."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Sort key: smaller runs first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The job raised an exception."""
    TIMED_OUT = "timed_out"
    """The attempt passed its deadline and its process group was killed."""
    CRASHED = "crashed"
    """The worker process died (a signal, `os._exit`) without reporting."""
    INTERRUPTED = "interrupted"
    """The daemon itself stopped or died while the attempt ran."""
    CANCELLED = "cancelled"


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt's error, described without needing the job's code to read it."""

    type: str
    """The exception's short class name, e.g. `ConnectionRefusedError`."""
    message: str
    traceback: str = ""
    hierarchy: list[str] = []
    """Names of the exception's classes, most specific first, each as both its short name
    and its dotted path (`builtins.` omitted), so rules match without importing anything."""

    def summary(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class AttemptInfo(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    """1-based within its round."""
    started_at: datetime
    finished_at: datetime | None = None
    outcome: Outcome | None = None
    """None while the attempt is still running."""
    worker_pid: int | None = None
    error: ErrorInfo | None = None
    duration: float | None = None
    round: int = 1
    """1 for the job's first attempts; each retry by a user starts the next round."""
    node: str = ""
    """The node that ran it (`[daemon] node`, or a `run_job.py` runner's name)."""

    @property
    def label(self) -> str:
        return str(self.number) if self.round == 1 else f"{self.number} (retry {self.round - 1})"


class ChainLink(msgspec.Struct, frozen=True, array_like=True):
    """One later link of a chain, as submitted: it receives the previous result first."""

    class_name: str
    method: str
    params: list[Any] = []


DEFAULT_QUEUE: Final = "default"
"""The queue of a job that names none: its workers are `[daemon] workers`."""
QUEUE_NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
"""A queue's name: letters, digits, `_`, `.` and `-`, at most 64."""
MAX_KEY_LENGTH: Final = 200
"""Longest idempotency key a submit may carry."""
MAX_BATCH_JOBS: Final = 1000
"""Most jobs a batch may have: bounds its callback's first parameter and `show`."""
MAX_TRACE_VALUE: Final = 512
"""Longest `traceparent` or `tracestate` a job carries: what W3C Trace Context asks every
vendor to pass on (a longer `tracestate` may be dropped)."""

TraceContext = Annotated[
    dict[
        Annotated[str, msgspec.Meta(pattern="^(traceparent|tracestate)$")],
        Annotated[str, msgspec.Meta(max_length=MAX_TRACE_VALUE)],
    ],
    msgspec.Meta(max_length=2),
]
"""The W3C trace context (`traceparent`, `tracestate`) of the code that submitted a job,
bounded when decoded: it comes from callers as params do (see `bgjobs.tracing`)."""


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller asks for. The daemon fills in the rest from the configuration."""

    class_name: str
    method: str
    params: list[Any] = []
    priority: Priority | None = None
    """None means the job's `job_priority` from the configuration (or medium)."""
    delay: float = 0.0
    """Seconds from now; ignored when `run_at` is given."""
    run_at: datetime | None = None
    then: list[ChainLink] = []
    """Jobs to run after this one, each given the previous one's result first."""
    key: str | None = None
    """Idempotency key, made by the client (as unique as a uuid4): a submit resent with the
    same key (after a timeout, a broken connection, a fallback) is the same job, not a
    second one."""
    trace: TraceContext | None = None
    """The submitter's trace context, filled in by `run_background_job` when a span is
    current: every attempt of the job (and of its chain's links) is a span in that trace."""
    batch: list[ChainLink] = []
    """A batch: these jobs run (in parallel), and this spec's own job is their callback,
    run once when all have ended, with the list of their results as its first parameter."""
    run_callback_on_failure: bool = False
    """For a batch: run the callback even when a member failed or was cancelled (its
    result is then None); by default the callback is cancelled instead."""
    queue: str | None = None
    """The named queue to run it in (and its chain's links, its batch's jobs); None: each
    job's class's `queue` from the configuration (or `default`)."""


class JobInfo(msgspec.Struct, kw_only=True):
    """Everything recorded about a job."""

    id: int
    class_name: str
    method: str
    params: list[Any]
    priority: Priority
    state: JobState
    run_at: datetime
    attempts: int
    """Attempts started so far."""
    max_attempts: int
    timeout: float
    created_at: datetime
    started_at: datetime | None = None
    """Start of the latest attempt."""
    finished_at: datetime | None = None
    result: Any = None
    error: ErrorInfo | None = None
    """The latest failed attempt's error."""
    reason: str | None = None
    """Why a job was cancelled or failed without an exception (e.g. a rule said so)."""
    worker_pid: int | None = None
    owner: str = ""
    """Who runs it (its latest attempt): a node (`[daemon] node`) or a one-shot runner
    (`run_job.py@HOST:PID`)."""
    chain_id: int | None = None
    """The id of the chain's first link; None for a job outside a chain."""
    chain_position: int | None = None
    chain_length: int | None = None
    unique_key: str | None = None
    key: str | None = None
    """The idempotency key it was submitted with, if any."""
    history: list[AttemptInfo] = []
    truncated: bool = False
    """True in a listing's summary whose params, result or error was cut to a preview (see
    `bgjobs.summary`); the whole record comes from `Get` (`bgjobctl show`)."""
    trace: dict[str, str] | None = None
    """The trace context it was submitted with (`JobSpec.trace`), if any."""
    progress: float | None = None
    """While it runs: the fraction done (0..1) its latest attempt reported with
    `bgjobs.progress`; None when it reported none. Kept by the daemon in memory only."""
    progress_message: str | None = None
    batch_id: int | None = None
    """The id of its batch (the batch's callback job's own id); None outside a batch."""
    run_callback_on_failure: bool = False
    """On a batch's callback: whether it runs even when a member did not succeed."""
    queue: str = DEFAULT_QUEUE
    """The named queue whose workers run it."""

    @property
    def is_batch_callback(self) -> bool:
        return self.batch_id is not None and self.batch_id == self.id

    @property
    def label(self) -> str:
        return f"{self.class_name}::{self.method}"

    @property
    def node(self) -> str:
        """The node that runs or ran its latest attempt; empty before any attempt started
        (`owner` then names only where it was submitted)."""
        return self.owner if self.started_at is not None else ""


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A change of a job's state, streamed to subscribers (the dashboard, `--follow`)."""

    job_id: int
    state: JobState
    class_name: str
    method: str
    attempt: int
    at: datetime
    outcome: Outcome | None = None
    progress: float | None = None
    """Set on a running job's progress update (and then the state is unchanged)."""
    progress_message: str | None = None


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    busy_with: int | None
    """The id of the job it is running, if any."""
    attempts_run: int
    started_at: datetime


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A process sharing the store's queue: a daemon, or a `run_job.py` runner."""

    name: str
    host: str
    pid: int
    address: str
    """Where its clients reach it (a socket path or HOST:PORT); empty for a runner."""
    started_at: datetime
    heartbeat_at: datetime
    lease_until: datetime
    """Past this without a heartbeat it is dead, and its running jobs are reclaimed."""
    workers_busy: int = 0
    workers_total: int = 0


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """A named queue: this node's workers for it, and its queued jobs (on every node)."""

    name: str
    workers: int
    """This node's workers for the queue (0: other nodes run it)."""
    busy: int
    """Of those, running an attempt (or about to)."""
    queued: int
    """Its jobs waiting for a worker, in the whole store."""


class RateStats(msgspec.Struct, frozen=True, kw_only=True):
    """A class with a `rate_limit`: its rate and its window ending now, counted over every
    node sharing the store."""

    class_name: str
    rate: str
    """As configured: `"5/s"`, `"100/m"`, `"1000/h"`."""
    limit_by: int | None = None
    """The parameter whose values count separately (one window per value), if any."""
    started: int
    """Starts within the window (every value's, with `limit_by`)."""
    keys: int = 0
    """The `limit_by` values among them (1 at most without `limit_by`)."""
    full: int
    """Of those, the ones at their rate: their next job waits for a start to free."""
    held: int
    """Queued jobs waiting for a full window (counted up to 10,000)."""
    next_slot: datetime | None = None
    """When the first full window frees a start; None if none is full."""


class PauseKind(enum.StrEnum):
    """What a pause holds back: every job, one class's, or one queue's."""

    ALL = "all"
    CLASS = "class"
    QUEUE = "queue"


class PauseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A stored pause: no node claims the jobs it names until it is resumed."""

    kind: PauseKind
    name: str
    """The class or queue; empty for `ALL`."""
    since: datetime

    @property
    def label(self) -> str:
        return "all jobs" if self.kind is PauseKind.ALL else f"{self.kind.value} {self.name}"


class Stats(msgspec.Struct, kw_only=True):
    counts: dict[str, int]
    """Jobs per state (every state present, zero included)."""
    finished_last_minute: int
    """Jobs that reached a final state (succeeded, failed, cancelled) in the last minute."""
    throughput_per_second: float
    """Jobs finished per second over the last minute."""
    workers: list[WorkerInfo]
    uptime: float
    daemon_pid: int
    queues: list[QueueStats] = []
    """Each queue this node runs or that has queued jobs, `default` first."""
    paused: list[PauseInfo] = []
    """The pauses in force (stored: they hold on every node sharing the store)."""
    rates: list[RateStats] = []
    """Each rate-limited class of this node's configuration, by name."""
