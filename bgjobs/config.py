"""Finding, loading and checking `bgjobs.toml`.

Every error is one `ConfigError` whose message names the file, the key and the reason.
Discovery order: an explicit path, `$BGJOBS_CONFIG`, `./bgjobs.toml`, the user's config
directory, `/etc/bgjobs/bgjobs.toml`; with none of them, the built-in defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from bgjobs.cron import Cron
from bgjobs.durations import parse_duration
from bgjobs.errors import ConfigError
from bgjobs.model import DEFAULT_QUEUE, QUEUE_NAME_PATTERN, Priority
from bgjobs.protocol import MAX_FRAME_BYTES
from bgjobs.rates import Rate, parse_rate
from bgjobs.settings import (
    ExceptionRule,
    JobSettings,
    QueueSettings,
    ScheduleSettings,
    Settings,
)
from bgjobs.sizes import format_size, parse_size

CONFIG_ENV: Final = "BGJOBS_CONFIG"
SOCKET_ENV: Final = "BGJOBS_SOCKET"
STORE_DSN_ENV: Final = "BGJOBS_STORE_DSN"
CONFIG_NAME: Final = "bgjobs.toml"
SYSTEM_CONFIG: Final = Path("/etc/bgjobs") / CONFIG_NAME

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_MSGSPEC_PATH = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")
_T = TypeVar("_T")

ENVELOPE_BYTES: Final = 256 * 1024
"""Room left in a frame for everything around a job's params and result (the message, its
other fields, an error's traceback)."""


@dataclass(frozen=True)
class AttemptLimits:
    """What one attempt of a class may use, in bytes (None: unlimited)."""

    memory_bytes: int | None
    output_bytes: int | None
    open_files: int | None
    result_bytes: int


@dataclass(frozen=True)
class Config:
    """A checked configuration and where it came from; relative paths resolve against the
    file's directory (once: they sit on every attempt's path)."""

    settings: Settings
    path: Path | None
    """The file it was read from; None for the built-in defaults."""

    @cached_property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @cached_property
    def storage_dir(self) -> Path:
        return self.resolve(self.settings.daemon.storage)

    @cached_property
    def logs_dir(self) -> Path:
        return self.storage_dir / "logs"

    @cached_property
    def job_output_dir(self) -> Path:
        return self.logs_dir / "jobs"

    @cached_property
    def locks_dir(self) -> Path:
        return self.storage_dir / "jobs"

    @cached_property
    def database_path(self) -> Path:
        configured = self.settings.store.path
        return self.resolve(configured) if configured else self.storage_dir / "bgjobs.db"

    @cached_property
    def store_dsn(self) -> str | None:
        """PostgreSQL's connection string: `$BGJOBS_STORE_DSN`, else `[store] dsn`."""
        return os.environ.get(STORE_DSN_ENV) or self.settings.store.dsn

    @cached_property
    def node_name(self) -> str:
        """`[daemon] node`, else the host name, with a digest of the socket's address
        when it is not the default (two daemons on one host then differ)."""
        if self.settings.daemon.node:
            return self.settings.daemon.node
        import hashlib
        import socket

        host = socket.gethostname().split(".")[0][:40] or "localhost"
        daemon = self.settings.daemon
        address = daemon.listen if daemon.transport == "tcp" else str(self.socket_path)
        if daemon.transport == "unix" and self.socket_path == default_runtime_dir() / "bgjobd.sock":
            return host
        return f"{host}-{hashlib.sha256(address.encode()).hexdigest()[:6]}"

    @cached_property
    def socket_path(self) -> Path:
        if self.settings.daemon.socket:
            return self.resolve(self.settings.daemon.socket)
        return default_runtime_dir() / "bgjobd.sock"

    @cached_property
    def token_path(self) -> Path:
        configured = self.settings.daemon.token_file
        return self.resolve(configured) if configured else self.storage_dir / "bgjobd.token"

    @cached_property
    def dashboard_token_path(self) -> Path:
        configured = self.settings.dashboard.token_file
        return self.resolve(configured) if configured else self.storage_dir / "dashboard.token"

    @cached_property
    def workers(self) -> int:
        """This node's worker processes, over every queue."""
        return sum(self.queue_workers.values())

    @cached_property
    def queue_workers(self) -> dict[str, int]:
        """Each queue this node knows, with its workers here: `default` (`[daemon] workers`,
        or `[queues.default]`), then each `[queues.NAME]`."""
        queues = self.settings.queues
        default = self.settings.daemon.workers or os.cpu_count() or 1
        workers = {DEFAULT_QUEUE: default}
        workers.update((name, queue.workers) for name, queue in queues.items())
        return workers

    def queue_of(self, class_name: str) -> str:
        """The queue a job of this class goes to unless its submit names one."""
        return self.job_settings(class_name).queue or DEFAULT_QUEUE

    def knows_queue(self, name: str) -> bool:
        return name in self.queue_workers

    def job_settings(self, class_name: str) -> JobSettings:
        return self.settings.jobs.get(class_name) or _NO_OVERRIDES

    @cached_property
    def concurrency_limits(self) -> dict[str, int]:
        """Every allow-listed class with a limit on its running jobs (over every process
        sharing the store): `max_concurrency`, or 1 for `overlap = false`."""
        limits: dict[str, int] = {}
        for class_name in self.settings.allowed_jobs:
            settings = self.job_settings(class_name)
            if settings.max_concurrency is not None:
                limits[class_name] = settings.max_concurrency
            elif not settings.overlap:
                limits[class_name] = 1
        return limits

    @cached_property
    def rate_limits(self) -> dict[str, Rate]:
        """Every allow-listed class with a `rate_limit` (starts per window, counted over
        every process sharing the store)."""
        return {
            class_name: parse_rate(rate)
            for class_name in self.settings.allowed_jobs
            if (rate := self.job_settings(class_name).rate_limit) is not None
        }

    def limit_by_of(self, class_name: str) -> int | None:
        """The parameter whose values the class's limits count separately (`limit_by`)."""
        return self.job_settings(class_name).limit_by

    def priority_of(self, class_name: str) -> Priority:
        return self.settings.job_priority.get(class_name, Priority.MEDIUM)

    def timeout_of(self, class_name: str) -> float:
        return self.job_settings(class_name).timeout or self.settings.max_execution_time

    def max_attempts_of(self, class_name: str) -> int:
        own = self.job_settings(class_name).retry_attempts
        return 1 + (self.settings.retry_attempts if own is None else own)

    def is_allowed(self, class_name: str, method: str) -> bool:
        return method in self.settings.allowed_jobs.get(class_name, ())

    @cached_property
    def max_params_bytes(self) -> int:
        return parse_size(self.settings.max_params_bytes)

    @cached_property
    def min_free_space(self) -> int:
        return parse_size(self.settings.daemon.min_free_space)

    def limits_of(self, class_name: str) -> AttemptLimits:
        limits = self._limits.get(class_name)
        if limits is None:
            limits = self._limits[class_name] = _limits(self.job_settings(class_name), self)
        return limits

    @cached_property
    def _limits(self) -> dict[str, AttemptLimits]:
        return {}


def _limits(job: JobSettings, config: Config) -> AttemptLimits:
    root = config.settings

    def size(own: int | str | None, default: int | str | None) -> int | None:
        value = own if own is not None else default
        return None if value is None else parse_size(value)

    return AttemptLimits(
        memory_bytes=size(job.memory_limit, root.memory_limit),
        output_bytes=size(job.max_output_bytes, root.max_output_bytes),
        open_files=job.max_open_files or root.max_open_files,
        result_bytes=size(job.max_result_bytes, root.max_result_bytes) or 0,
    )


_NO_OVERRIDES: Final = JobSettings()


def default_runtime_dir() -> Path:
    """The per-user directory for the socket (`$XDG_RUNTIME_DIR/bgjobs` or a fallback)."""
    import platformdirs

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp/runtime-UID,
        # which is what we want anyway.
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("bgjobs"))


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file to use, or None when there is none anywhere."""
    named = explicit or os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            source = "--config" if explicit else f"${CONFIG_ENV}"
            raise ConfigError(f"{path}: configuration file not found (named by {source})")
        return path.resolve()
    import platformdirs

    for candidate in (
        Path.cwd() / CONFIG_NAME,
        Path(platformdirs.user_config_dir("bgjobs")) / CONFIG_NAME,
        SYSTEM_CONFIG,
    ):
        if candidate.is_file():
            return candidate.resolve()
    return None


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Find and load the configuration; raises ConfigError naming the key and the reason."""
    path = find_config_path(explicit)
    if path is None:
        return Config(Settings(), None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return Config(parse_settings(text, source=str(path)), path)


def parse_settings(text: str, *, source: str = CONFIG_NAME) -> Settings:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        _check_keyed_tables(raw)
        settings = _convert(raw, Settings, "")
        _check_consistency(settings)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return settings


def _check_keyed_tables(raw: Mapping[str, Any]) -> None:
    """Check the tables keyed by user-chosen names entry by entry, so that an error names
    the entry (msgspec would only say `job_priority[...]`)."""
    allowed = _table(raw, "allowed_jobs")
    for class_name, methods in allowed.items():
        _check_class_name(class_name, f"allowed_jobs.{class_name}")
        for method in _convert(methods, list[str], f"allowed_jobs.{class_name}"):
            _check_method_name(method, f"allowed_jobs.{class_name}")
    for class_name, priority in _table(raw, "job_priority").items():
        if priority not in tuple(Priority):
            raise ConfigError(
                f"job_priority.{class_name}: {priority!r} is not a priority "
                '(use "high", "medium" or "low")'
            )
    for class_name, overrides in _table(raw, "jobs").items():
        key = f"jobs.{class_name}"
        if not isinstance(overrides, dict):
            raise ConfigError(f"{key}: expected a table")
        _check_rules(overrides, f"{key}.exceptions")
        _convert(overrides, JobSettings, key)
    _check_rules(raw, "exceptions")
    _check_schedule_tables(raw)
    _check_queue_tables(raw)


def _check_rules(container: Mapping[str, Any], key: str) -> None:
    for name, rule in _table(container, key.rsplit(".", 1)[-1]).items():
        if not _DOTTED.match(name):
            raise ConfigError(f"{key}.{name}: not an exception class name")
        _convert(rule, ExceptionRule, f"{key}.{name}")


def _check_consistency(settings: Settings) -> None:
    allowed = settings.allowed_jobs
    for class_name in settings.job_priority:
        if class_name not in allowed:
            raise ConfigError(f"job_priority.{class_name}: class is not in allowed_jobs")
    for class_name in settings.jobs:
        if class_name not in allowed:
            raise ConfigError(f"jobs.{class_name}: class is not in allowed_jobs")
    if not _DOTTED.match(settings.jobs_package):
        raise ConfigError(f"jobs_package: {settings.jobs_package!r} is not a package name")
    _check_store(settings)
    _check_sizes(settings)
    _check_schedules(settings)
    _check_retention(settings)
    _check_queues(settings)
    _check_rates(settings)


def _check_store(settings: Settings) -> None:
    """Each backend's keys with their backend only, and PostgreSQL with somewhere to go."""
    store = settings.store
    if store.backend == "sqlite":
        if store.dsn is not None:
            raise ConfigError('store.dsn: only for backend = "postgresql" (SQLite uses path)')
        if store.schema != "bgjobs":
            raise ConfigError('store.schema: only for backend = "postgresql"')
        return
    if store.path is not None:
        raise ConfigError('store.path: only for backend = "sqlite" (PostgreSQL uses dsn)')
    if not (store.dsn or os.environ.get(STORE_DSN_ENV)):
        raise ConfigError(
            f'store.dsn: backend = "postgresql" needs a connection string (or ${STORE_DSN_ENV})'
        )


def _size(value: int | str | None, key: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _check_sizes(settings: Settings) -> None:
    """Every size parses, and a job's params with the result it may receive from the link
    before it still fit in one frame with room for the message around them."""
    _size(settings.daemon.min_free_space, "daemon.min_free_space")
    budget = _size(settings.daemon.buffer_budget, "daemon.buffer_budget") or 0
    if budget < MAX_FRAME_BYTES:
        raise ConfigError(
            "daemon.buffer_budget: must hold at least one whole frame "
            f"({format_size(MAX_FRAME_BYTES)})"
        )
    params = _size(settings.max_params_bytes, "max_params_bytes") or 0
    tables: list[tuple[str, Settings | JobSettings]] = [("", settings)]
    tables += [(f"jobs.{name}.", job) for name, job in settings.jobs.items()]
    largest_result = 0
    for prefix, table in tables:
        for key in ("memory_limit", "max_output_bytes", "max_result_bytes"):
            _size(getattr(table, key), prefix + key)
        result = _size(table.max_result_bytes, prefix + "max_result_bytes")
        if result is not None:
            largest_result = max(largest_result, result)
    room = MAX_FRAME_BYTES - ENVELOPE_BYTES
    if params + largest_result > room:
        raise ConfigError(
            f"max_params_bytes + max_result_bytes: {format_size(params + largest_result)} "
            f"exceeds what one message carries ({format_size(room)})"
        )


def _check_class_name(name: str, key: str) -> None:
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{key}: class name must be a plain identifier (no dots)")
    if name.startswith("_"):
        raise ConfigError(f"{key}: class name must not start with '_'")


def _check_method_name(name: str, key: str) -> None:
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{key}: method {name!r} is not a plain identifier")
    if name.startswith("_"):
        raise ConfigError(f"{key}: method {name!r} starts with '_'; private methods never run")


def _table(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table")
    return value


def _convert(value: Any, target: type[_T], key: str) -> _T:
    try:
        return msgspec.convert(value, target)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(str(exc), key)) from None


def _describe(error: str, key: str) -> str:
    """Turn msgspec's `reason - at `$.a.b`` into `key.a.b: reason`."""
    match = _MSGSPEC_PATH.match(error)
    reason, path = (match["reason"], match["path"]) if match else (error, "")
    full_key = ".".join(part for part in (key, path.lstrip(".")) if part)
    unknown = _UNKNOWN_FIELD.match(reason)
    if unknown:
        full_key = ".".join(part for part in (full_key, unknown["name"]) if part)
        reason = "unknown key"
    return f"{full_key or '(top level)'}: {reason}"


# Schedules and retention --------------------------------------------------------------------

_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")


def _check_schedule_tables(raw: Mapping[str, Any]) -> None:
    """Each `[schedules.NAME]` on its own, so that an error names the schedule."""
    for name, table in _table(raw, "schedules").items():
        key = f"schedules.{name}"
        if not _SCHEDULE_NAME.match(name):
            raise ConfigError(
                f"{key}: a schedule name is letters, digits, '_', '.' and '-' (up to 100)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        _convert(table, ScheduleSettings, key)


def _check_schedules(settings: Settings) -> None:
    for name, schedule in settings.schedules.items():
        key = f"schedules.{name}"
        if not settings.allowed_jobs.get(schedule.class_name) or (
            schedule.method not in settings.allowed_jobs[schedule.class_name]
        ):
            raise ConfigError(
                f"{key}: {schedule.class_name}::{schedule.method} is not in allowed_jobs"
            )
        try:
            Cron.parse(schedule.cron, "UTC")
        except ValueError as exc:
            raise ConfigError(f"{key}.cron: {exc}") from None
        try:
            Cron.parse("* * * * *", schedule.timezone)
        except ValueError as exc:
            raise ConfigError(f"{key}.timezone: {exc}") from None


def _check_retention(settings: Settings) -> None:
    retention = settings.retention
    for state in ("succeeded", "failed", "cancelled", "interval"):
        try:
            parse_duration(getattr(retention, state))
        except ValueError as exc:
            raise ConfigError(f"retention.{state}: {exc}") from None
    if parse_duration(retention.interval) < 1:
        raise ConfigError("retention.interval: at least 1 s")


# Named queues -----------------------------------------------------------------------------

_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def _check_queue_tables(raw: Mapping[str, Any]) -> None:
    """Each `[queues.NAME]` on its own, so that an error names the queue."""
    for name, table in _table(raw, "queues").items():
        key = f"queues.{name}"
        if not _QUEUE_NAME.match(name):
            raise ConfigError(
                f"{key}: a queue name is letters, digits, '_', '.' and '-' (up to 64)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table")
        _convert(table, QueueSettings, key)


def _check_queues(settings: Settings) -> None:
    """Every queue named (by a class, a schedule) is configured, the default queue's
    workers are set in one place, and the node runs some worker."""
    queues = settings.queues
    if DEFAULT_QUEUE in queues and settings.daemon.workers is not None:
        raise ConfigError(
            f"queues.{DEFAULT_QUEUE}: the default queue's workers are daemon.workers; "
            "set one of them"
        )
    named = [(f"jobs.{name}.queue", job.queue) for name, job in settings.jobs.items()]
    named += [(f"schedules.{name}.queue", s.queue) for name, s in settings.schedules.items()]
    for key, queue in named:
        if queue is not None and queue != DEFAULT_QUEUE and queue not in queues:
            raise ConfigError(f"{key}: no queue {queue!r} (add [queues.{queue}])")
    default = DEFAULT_QUEUE not in queues or queues[DEFAULT_QUEUE].workers > 0
    if not default and not any(queue.workers for queue in queues.values()):
        raise ConfigError("queues: every queue has 0 workers; this node would run nothing")


def _check_rates(settings: Settings) -> None:
    """`rate_limit` parses; `limit_by` divides some limit of its class."""
    for class_name, job in settings.jobs.items():
        key = f"jobs.{class_name}"
        if job.rate_limit is not None:
            try:
                parse_rate(job.rate_limit)
            except ValueError as exc:
                raise ConfigError(f"{key}.rate_limit: {exc}") from None
        limited = job.rate_limit is not None or job.max_concurrency is not None or not job.overlap
        if job.limit_by is not None and not limited:
            raise ConfigError(
                f"{key}.limit_by: counts rate_limit, max_concurrency or overlap = false per "
                "value of a parameter; the class has none of them"
            )
