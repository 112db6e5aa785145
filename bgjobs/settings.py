"""The typed shape of `bgjobs.toml`.

The original's keys (`allowed_jobs`, `retry_attempts`, `retry_delay_seconds`,
`max_execution_time`, `job_priority`) keep the original's meaning, so a PHP configuration
ports line by line; everything else is ours. `config.py` loads and checks it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from bgjobs.model import QUEUE_NAME_PATTERN, Priority
from bgjobs.times import MAX_DELAY

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY)]
"""Seconds, from 0 to ten years: TOML allows `inf` and `nan`, and neither is a duration."""
PositiveFloat = Annotated[float, msgspec.Meta(gt=0, le=MAX_DELAY)]
"""Seconds, over 0 and at most ten years."""
Backoff = Literal["fixed", "exponential"]
NodeName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")]
"""Letters, digits and `._:@-`, at most 64: it is shown in every listing and log line."""
QueueName = Annotated[str, msgspec.Meta(pattern=QUEUE_NAME_PATTERN)]
"""Letters, digits and `_.-`, at most 64 (see `[queues.NAME]`)."""
LeaseSeconds = Annotated[float, msgspec.Meta(ge=1, le=3600)]
Size = Annotated[int, msgspec.Meta(ge=0)] | str
"""Bytes, or a string such as `"512MiB"` (see `bgjobs.sizes`); `Config` gives them in bytes."""


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class RetrySettings(_Table, frozen=True):
    """Retry knobs that a job's own table and an exception rule may each override."""

    retry_attempts: NonNegativeInt | None = None
    retry_delay_seconds: NonNegativeFloat | None = None
    backoff: Backoff | None = None
    """`exponential` doubles the delay from `retry_delay_seconds` on every retry."""
    max_retry_delay: NonNegativeFloat | None = None
    jitter: bool | None = None
    """Spread each delay randomly over [delay/2, delay] so retries of many jobs do not align."""


class ExceptionRule(RetrySettings, frozen=True):
    """`[exceptions.NAME]` or `[jobs.CLASS.exceptions.NAME]`: what to do when an attempt
    raised NAME (or a subclass of it)."""

    action: Literal["retry", "fail"] = "retry"


class JobSettings(RetrySettings, frozen=True):
    """`[jobs.CLASS]`: overrides for one allow-listed class. The limits (as in `Settings`)
    override the global ones; None takes the global value."""

    memory_limit: Size | None = None
    max_output_bytes: Size | None = None
    max_open_files: PositiveInt | None = None
    max_result_bytes: Size | None = None

    timeout: PositiveFloat | None = None
    overlap: bool = True
    """False: at most one job of this class runs at a time; the rest wait their turn."""
    max_concurrency: PositiveInt | None = None
    rate_limit: str | None = None
    """`"N/s"`, `"N/m"` or `"N/h"`: at most N starts in any such window, across every
    process sharing the store; the rest wait their turn (see `bgjobs.rates`)."""
    limit_by: NonNegativeInt | None = None
    """A parameter index: `rate_limit`, `max_concurrency` and `overlap` count per distinct
    value of that parameter (a customer, an account) instead of per class."""
    unique: bool = False
    """A submit equal (class, method, params) to a job still waiting or running returns
    that job's id instead of creating another."""
    exceptions: dict[str, ExceptionRule] = {}
    queue: QueueName | None = None
    """The named queue (`[queues.NAME]`) whose workers run this class's jobs; None: the
    `default` queue. A submit may name another (`--queue`, `queue=`)."""


class QueueSettings(_Table, frozen=True):
    """`[queues.NAME]`: a named queue and this node's workers for it."""

    workers: NonNegativeInt
    """Worker processes of this queue on this node; 0: the queue is known here (submits
    to it are accepted) but other nodes sharing the store run its jobs."""


class DaemonSettings(_Table, frozen=True):
    socket: str | None = None
    """Path of the Unix socket; default `bgjobd.sock` in the user's runtime directory."""
    storage: str = "storage"
    """Directory of `logs/`, `jobs/` (lock files) and the database."""
    workers: PositiveInt | None = None
    """Worker processes; default the number of CPUs."""
    transport: Literal["unix", "tcp"] = "unix"
    listen: str = "127.0.0.1:7345"
    """HOST:PORT for the TCP transport."""
    token_file: str | None = None
    """The TCP transport's shared secret; default `<storage>/bgjobd.token`, made on start."""
    allowed_uids: list[NonNegativeInt] = []
    """Unix users besides the daemon's own that may use the socket."""
    allowed_gids: list[NonNegativeInt] = []
    """Unix groups whose members (by primary or supplementary group) may use the socket."""
    group: str | None = None
    """An operators' group: storage directories 0750 + setgid and files 0640 owned by it.
    None: everything bgjobd writes is its user's alone (0700 / 0600)."""
    shutdown_timeout: NonNegativeFloat = 30.0
    kill_grace: NonNegativeFloat = 5.0
    """Seconds between SIGTERM and SIGKILL when an attempt is stopped."""
    isolation: Literal["warm", "fresh"] = "warm"
    """`fresh`: a new interpreter for every attempt instead of warm workers."""
    worker_start: Literal["fork", "spawn"] = "fork"
    """How warm workers start: `fork`, forked from a template process that has imported
    the jobs package once (they share its memory); `spawn`, each a new interpreter that
    imports it. Where forking is not possible (no subreaper or pidfd), `spawn`."""
    max_jobs_per_worker: NonNegativeInt = 0
    """Recycle a warm worker after this many attempts; 0 never does."""
    fsync: bool = False
    """True: every acknowledgement also survives power loss (SQLite synchronous=FULL).
    False still survives the death of any process, the daemon included."""
    min_free_space: Size = "16MiB"
    """Below this much free space on the store's disk, submits are refused (`store_full`)
    so that what is already acknowledged can still be recorded."""
    buffer_budget: Size = "64MiB"
    """Bytes of large frames (over 64 KiB) that all connections together may hold while
    they are being received; past it a connection is not read until there is room. At
    least the largest frame (4 MiB)."""
    stall_timeout: PositiveFloat = 30.0
    """Seconds a connection may leave a frame half sent before it is closed (twice that
    for a frame waiting for room in the buffer budget)."""
    idle_timeout: PositiveFloat = 300.0
    """Seconds a connection with no request in flight and no subscription stays open
    (clients reconnect by themselves)."""
    node: NodeName | None = None
    """This daemon's name among the nodes sharing its store; default the host name, with
    a short digest of the socket's address when it is not the default one."""
    lease_seconds: LeaseSeconds = 30.0
    """How long a node's claim on its running jobs lasts without a heartbeat (renewed at a
    third of it). A node silent for longer is dead: another reclaims its jobs."""


SchemaName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
"""A plain PostgreSQL identifier: letters, digits and `_`, at most 63."""


class StoreSettings(_Table, frozen=True):
    """`[store]`: where the queue lives, shared by every node pointed at it."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    path: str | None = None
    """The SQLite database; default `<storage>/bgjobs.db`."""
    dsn: str | None = None
    """PostgreSQL: the connection string (`postgresql://user@host:5432/db`, or libpq's
    `key=value` form); `$BGJOBS_STORE_DSN` overrides it, so a password need not be in the
    file."""
    schema: SchemaName = "bgjobs"
    """PostgreSQL: the schema holding the store's tables (one per queue: tenants and tests
    sharing a database each take their own)."""
    enqueue: Literal["direct", "daemon"] = "direct"
    """PostgreSQL: how `run_background_job` submits. `direct`: it stores the job itself, in
    one committed statement, and the nodes learn of it from the database (a host that only
    submits needs no daemon); `daemon`: through the daemon's socket, as on SQLite."""


class DashboardSettings(_Table, frozen=True):
    enabled: bool = True
    listen: str = "127.0.0.1:8000"
    token: str | None = None
    """The login token; default the contents of `token_file`."""
    token_file: str | None = None
    """Where the login token is kept; default `<storage>/dashboard.token` (0600), made on
    the first start. `bgjobctl dashboard` reads it to open a logged-in browser."""
    public_metrics: bool = False
    """True: `/metrics` is served without a login (only on a loopback `listen`), e.g. for a
    Prometheus on this host. False: it needs the token (`Authorization: Bearer`)."""


class TracingSettings(_Table, frozen=True):
    """`[tracing]`: OpenTelemetry spans of attempts (`pip install bgjobs[otel]`)."""

    enabled: bool = False
    """True: each attempt is a span, in the trace of the code that submitted the job."""
    setup: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    """`package.module:function`, called once by each worker (with the configuration's
    directory on `sys.path`) to install the application's tracer provider. None: the
    worker exports with OTLP as the standard `OTEL_*` environment variables say."""


LogFormat = Literal["text", "jsonl", "both"]


class LoggingSettings(_Table, frozen=True):
    format: LogFormat = "text"
    """`text`: the original's two files (`background_jobs.log`, `background_jobs_errors.log`).
    `jsonl`: instead, every line as a JSON object in `background_jobs.jsonl` (for log
    shippers; the dashboard's log panels and `bgjobctl logs` read the text files, so they
    stay empty). `both`: the text files and the JSON lines."""


Duration = Annotated[float, msgspec.Meta(ge=0)] | str
"""Seconds, or a string such as `"12h"` or `"7d"` (see `bgjobs.durations`)."""


class ScheduleSettings(_Table, frozen=True):
    """`[schedules.NAME]`: submit an allow-listed job at every tick of a cron expression."""

    cron: str
    """Five fields (minute hour day month weekday) or `@yearly`, `@monthly`, `@weekly`,
    `@daily`, `@hourly`; evaluated by cronsim (Debian cron's rules, DST included)."""
    class_name: str = msgspec.field(name="class")
    method: str
    params: list[Any] = []
    timezone: str = "UTC"
    """An IANA name; the cron fields are read on that zone's wall clock."""
    missed: Literal["skip", "run_once"] = "skip"
    """After downtime: `skip` the ticks that passed, or `run_once` for all of them."""
    priority: Priority | None = None
    queue: QueueName | None = None
    """The named queue of its jobs; None: its class's (see `[jobs.CLASS] queue`)."""


class RetentionSettings(_Table, frozen=True):
    """`[retention]`: how long finished jobs are kept (by when they finished)."""

    succeeded: Duration = "7d"
    failed: Duration = "30d"
    cancelled: Duration = "7d"
    max_finished_jobs: PositiveInt | None = None
    """Also keep at most this many finished jobs (the oldest go first)."""
    interval: Duration = "1m"
    """How often the daemon prunes (each pass in batches of 500 jobs per commit)."""


class Settings(_Table, frozen=True):
    allowed_jobs: dict[str, list[str]] = {}
    retry_attempts: NonNegativeInt = 0
    retry_delay_seconds: NonNegativeFloat = 5.0
    max_execution_time: PositiveFloat = 300.0
    job_priority: dict[str, Priority] = {}
    jobs_package: str = "jobs"
    backoff: Backoff = "fixed"
    max_retry_delay: NonNegativeFloat | None = None
    jitter: bool = False
    memory_limit: Size | None = None
    """Memory of an attempt's processes (cgroup `memory.max` where available, else
    `RLIMIT_AS` of each process); over it the attempt fails as `MemoryLimitExceeded`.
    None: no limit."""
    max_output_bytes: Size = "10MiB"
    """What an attempt may print; the head and the tail are kept, and what was cut is said."""
    max_open_files: PositiveInt | None = None
    """`RLIMIT_NOFILE` of an attempt's processes; None: inherited."""
    max_result_bytes: Size = "1MiB"
    """An attempt's encoded return value; a larger one fails it as `ResultTooLarge`."""
    max_params_bytes: Size = "1MiB"
    """The encoded parameters of one job (a chain link's own, and with the result it
    receives); a larger submit is refused (`too_large`)."""
    daemon: DaemonSettings = DaemonSettings()
    store: StoreSettings = StoreSettings()
    dashboard: DashboardSettings = DashboardSettings()
    tracing: TracingSettings = TracingSettings()
    logging: LoggingSettings = LoggingSettings()
    jobs: dict[str, JobSettings] = {}
    exceptions: dict[str, ExceptionRule] = {}
    schedules: dict[str, ScheduleSettings] = {}
    queues: dict[str, QueueSettings] = {}
    retention: RetentionSettings = RetentionSettings()
