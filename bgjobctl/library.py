"""`run_background_job()`: hand a job to the daemon from application code and return at once.

    from bgjobctl import run_background_job
    handle = run_background_job("LessonCreatedService", "handle", ["English Grammar 101"])
    handle.id        # the job's id (None while it waits in the spool: see below)
    handle.wait(10)  # its result, or JobFailed carrying the job's error

One connection per process is reused, safely across threads and after fork. When no daemon
answers (fallback="spawn", the default), the job is checked as the daemon would check it,
spooled beside the store and run by the one drainer of the host until the daemon is back
and takes the rest over (bgjobctl.fallback); fallback="error" raises DaemonUnreachable.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from bgjobctl.address import resolve_address
from bgjobctl.client import DEFAULT_TIMEOUT, Client
from bgjobctl.fallback import POLL_SECONDS, SpooledJob, Spooler, remaining, through_daemon
from bgjobs.config import CONFIG_ENV, SOCKET_ENV, Config
from bgjobs.errors import DaemonUnreachable, JobCancelled, JobFailed, TooLarge, UsageError
from bgjobs.model import (
    MAX_BATCH_JOBS,
    MAX_KEY_LENGTH,
    QUEUE_NAME_PATTERN,
    ChainLink,
    JobInfo,
    JobSpec,
    JobState,
    Priority,
)
from bgjobs.params import check_encodable
from bgjobs.protocol import MAX_FRAME_BYTES, ErrorCode
from bgjobs.sizes import format_size
from bgjobs.times import delay_problem, run_at_problem
from bgjobs.tracing import current_trace

if TYPE_CHECKING:
    from bgjobctl.direct import DirectEnqueue

Fallback = Literal["spawn", "error"]
LinkSpec = tuple[str, str] | tuple[str, str, Sequence[Any]]


class JobHandle:
    """A submitted job (or chain): its id, and a way to wait for its result.

    A job spooled because no daemon answered behaves the same: its `id` is known once the
    drainer or the daemon has stored it (None until then), and `wait()` waits through the
    daemon when it answers, else by reading the store. So does a job the library stored
    itself on PostgreSQL (`bgjobctl.direct`), on a host with no daemon."""

    def __init__(
        self,
        id: int | None,
        last_id: int | None = None,
        client: Client | None = None,
        *,
        spooled: SpooledJob | None = None,
        stored: Callable[[int], JobInfo | None] | None = None,
    ) -> None:
        self._id = id
        self._last_id = last_id if last_id is not None else id
        self.client = client
        self.spooled = spooled
        self._stored = stored if stored is not None or spooled is None else spooled.stored
        """The job as the store holds it, or None while it cannot say."""

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, last_id={self._last_id!r})"

    def _resolve(self) -> None:
        if self._id is None and self.spooled is not None:
            ids = self.spooled.ids()
            if ids:
                self._id, self._last_id = ids[0], ids[-1]

    @property
    def id(self) -> int | None:
        self._resolve()
        return self._id

    @property
    def last_id(self) -> int | None:
        """The last link's id, for a chain; the job's own id otherwise."""
        self._resolve()
        return self._last_id

    def job(self) -> JobInfo:
        """The job's current record (the first link's, for a chain)."""
        job_id = self.id
        if job_id is None:
            raise UsageError("the job waits in the spool (no daemon answered): no record yet")
        if self.client is not None:
            try:
                return self.client.get(job_id)
            except DaemonUnreachable:
                if self._stored is None:
                    raise
        found = self._stored(job_id) if self._stored is not None else None
        if found is None:
            raise DaemonUnreachable(f"no daemon answers and job {job_id} cannot be read")
        return found

    def wait(self, timeout: float | None = None) -> Any:
        """The result of the job (of the chain's last link); raises JobFailed (or
        JobCancelled) if it did not succeed, TimeoutError after `timeout` seconds."""
        if self._stored is None:
            assert self.client is not None and self._last_id is not None
            return result_of(self.client.wait(self._last_id, timeout))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            return result_of(self._wait_stored(self._stored, deadline))
        except TimeoutError:
            raise TimeoutError(f"the job did not finish within {timeout}s") from None

    def _wait_stored(
        self, stored: Callable[[int], JobInfo | None], deadline: float | None
    ) -> JobInfo:
        while True:
            last = self.last_id
            if last is not None:
                job = stored(last)
                if job is not None and job.state.is_final:
                    return job
                if self.client is not None:
                    try:
                        return self.client.wait(last, through_daemon(deadline))
                    except DaemonUnreachable:
                        pass  # not up (yet, or again): the store tells
                    except TimeoutError:
                        pass  # a slice: see `through_daemon`
            left = remaining(deadline)
            time.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))


def result_of(job: JobInfo) -> Any:
    if job.state is JobState.SUCCEEDED:
        return job.result
    if job.state is JobState.CANCELLED:
        raise JobCancelled(job)
    raise JobFailed(job)


def make_spec(
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    key: str | None = None,
    queue: str | None = None,
) -> JobSpec:
    """The spec of one submit, with a fresh idempotency key unless one is given (e.g. one
    derived from the caller's own request id, so that its retries are the same job), and
    the trace context of the caller's current OpenTelemetry span, if any. `queue` names
    the queue to run it in (the daemon refuses one its configuration lacks)."""
    if at is not None and at.tzinfo is None:
        raise UsageError("at= must be a timezone-aware datetime")
    problem = run_at_problem(at) if at is not None else delay_problem(delay)
    if problem:
        raise UsageError(f"{'at' if at is not None else 'delay'} {problem}")
    if isinstance(params, str | bytes):
        raise UsageError("params must be a list of values, not a single string")
    values = list(params)
    check_encodable(values)
    links = [_link(link) for link in then]
    try:
        chosen = Priority(priority) if priority is not None else None
    except ValueError:
        raise UsageError(f"priority must be high, medium or low, not {priority!r}") from None
    spec = JobSpec(
        class_name=class_name,
        method=method,
        params=values,
        priority=chosen,
        delay=float(delay),
        run_at=at,
        then=links,
        key=new_key() if key is None else _checked_key(key),
        trace=current_trace(),
        queue=_checked_queue(queue),
    )
    _check_sendable(spec)
    return spec


def _checked_queue(queue: str | None) -> str | None:
    if queue is not None and not re.match(QUEUE_NAME_PATTERN, queue):
        raise UsageError(
            f"queue {queue[:80]!r}: a queue name is letters, digits, '_', '.' and '-' (up to 64)"
        )
    return queue


def _check_sendable(spec: JobSpec) -> None:
    check_sendable_size(len(msgspec.msgpack.encode(spec)))


def check_sendable_size(size: int) -> None:
    """Refuse at once a job of `size` bytes encoded too large for any request (the
    daemon's `max_params_bytes`, which it checks, is lower still): sent, it would only get
    the connection closed."""
    if size > MAX_FRAME_BYTES:
        raise TooLarge(
            ErrorCode.TOO_LARGE,
            f"the job's params are {format_size(size)}, over the "
            f"{format_size(MAX_FRAME_BYTES)} a request carries",
        )


def new_key() -> str:
    """A fresh idempotency key: 32 hex digits, as a uuid4's, unique as well (see `_Keys`)."""
    return _keys.next()


class _Keys:
    """Keys made of 96 random bits drawn per process (again in a forked child, and after
    2**32 keys) and a counter. Two processes' keys collide as rarely as two uuid4s (the
    prefixes would have to), and the store's unique index takes one process's keys in
    order: a wholly random key per job lands on a random page of that index, which was
    half of what storing a job cost in a bulk enqueue (7 of 15 µs a row)."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        # A fresh lock too: the parent's may have been held by another thread at the fork.
        self._lock = threading.Lock()
        self._prefix = os.urandom(12).hex()
        self._count = 0

    def next(self) -> str:
        with self._lock:
            if self._count == 1 << 32:
                self._prefix, self._count = os.urandom(12).hex(), 0
            count = self._count
            self._count += 1
            return f"{self._prefix}{count:08x}"


_keys = _Keys()


def _checked_key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise UsageError(f"key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    return key


def _link(link: LinkSpec) -> ChainLink:
    if len(link) == 2:
        return ChainLink(link[0], link[1], [])
    if len(link) == 3:
        return ChainLink(link[0], link[1], list(link[2]))
    raise UsageError(f"a chain link is (class, method) or (class, method, params), not {link!r}")


class JobClient:
    """Submits jobs to the daemon named by a configuration (or socket path)."""

    def __init__(
        self,
        *,
        config: str | None = None,
        socket: str | None = None,
        fallback: Fallback = "spawn",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """`timeout`: seconds to wait for the daemon's answer before falling back."""
        address, loaded = resolve_address(config, socket)
        self.client = Client(address, timeout=timeout)
        self.config_path = str(loaded.path) if loaded.path else None
        self.fallback = fallback
        self.spooler = Spooler(loaded, self.config_path, socket)
        self.direct = _direct_enqueue(loaded)

    def close(self) -> None:
        self.client.close()
        if self.direct is not None:
            self.direct.close()

    def submit(self, spec: JobSpec, *, fallback: Fallback | None = None) -> JobHandle:
        if self.direct is not None and (stored := self.direct.submit(spec)) is not None:
            return JobHandle(
                id=stored[0], last_id=stored[-1], client=self.client, stored=self.direct.stored
            )
        try:
            submitted = self.client.submit([spec])
        except DaemonUnreachable:
            if (fallback or self.fallback) == "error":
                raise
            return JobHandle(
                id=None, client=self.client, spooled=spool_or_raise(self.spooler, spec)
            )
        last = submitted.last_ids[0] if submitted.last_ids else submitted.ids[0]
        return JobHandle(id=submitted.ids[0], last_id=last, client=self.client)


def _direct_enqueue(config: Config) -> DirectEnqueue | None:
    """The library's own writer of jobs into a PostgreSQL store (`[store] enqueue`), if the
    configuration asks for one and psycopg is installed (else submits go to the daemon)."""
    store = config.settings.store
    if store.backend != "postgresql" or store.enqueue != "direct":
        return None
    try:
        from bgjobctl.direct import DirectEnqueue
    except ImportError:
        return None
    return DirectEnqueue(config)


def spool_or_raise(spooler: Spooler, spec: JobSpec) -> SpooledJob:
    """The job spooled; a refusal as the daemon would give it; DaemonUnreachable if the
    spool cannot be written either (then nothing holds the job: the caller must know)."""
    try:
        return spooler.spool(spec)
    except OSError as exc:
        raise DaemonUnreachable(
            f"no daemon answers, and the job could not be spooled: {exc}"
        ) from exc


_clients: dict[tuple[str | None, ...], JobClient] = {}
_clients_lock = threading.Lock()


def discovery_key(config: str | None, socket: str | None) -> tuple[str | None, ...]:
    """Everything that decides which daemon a call reaches, so that one client per daemon
    is kept without reading the configuration on every call."""
    return (
        config,
        socket,
        os.environ.get(CONFIG_ENV),
        os.environ.get(SOCKET_ENV),
        None if config or os.environ.get(CONFIG_ENV) else os.getcwd(),
    )


def close_clients() -> None:
    """Close the connections `run_background_job` keeps (e.g. at application shutdown)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _client_for(config: str | None, socket: str | None) -> JobClient:
    key = discovery_key(config, socket)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = JobClient(config=config, socket=socket)
        return client


def run_background_job(
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    fallback: Fallback = "spawn",
    config: str | None = None,
    socket: str | None = None,
    key: str | None = None,
    queue: str | None = None,
) -> JobHandle:
    """Run `class_name().method(*params)` in the background, after `delay` seconds (or at
    `at`), then each job of `then` with the previous result first. Returns at once.

    `key` is the submit's idempotency key (a fresh random one by default): a second call
    with the same key returns the job of the first instead of a second job. `queue` runs
    it (and its chain) in that named queue instead of its class's (`[queues.NAME]`)."""
    spec = make_spec(
        class_name,
        method,
        params,
        delay,
        priority=priority,
        at=at,
        then=then,
        key=key,
        queue=queue,
    )
    return _client_for(config, socket).submit(spec, fallback=fallback)


def make_batch_spec(
    jobs: Sequence[LinkSpec],
    callback: LinkSpec,
    *,
    run_callback_on_failure: bool = False,
    delay: float = 0,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    key: str | None = None,
    queue: str | None = None,
) -> JobSpec:
    """The spec of a batch: `callback` with the batch's jobs as its `batch`."""
    if isinstance(jobs, str | bytes) or not 0 < len(jobs) <= MAX_BATCH_JOBS:
        raise UsageError(f"a batch has 1 to {MAX_BATCH_JOBS} jobs")
    members = [_link(job) for job in jobs]
    for member in members:
        check_encodable(member.params)
    first = _link(callback)
    spec = make_spec(
        first.class_name,
        first.method,
        first.params,
        delay,
        priority=priority,
        at=at,
        key=key,
        queue=queue,
    )
    spec = msgspec.structs.replace(
        spec, batch=members, run_callback_on_failure=bool(run_callback_on_failure)
    )
    _check_sendable(spec)
    return spec


def run_batch(
    jobs: Sequence[LinkSpec],
    callback: LinkSpec,
    *,
    run_callback_on_failure: bool = False,
    delay: float = 0,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    fallback: Fallback = "spawn",
    config: str | None = None,
    socket: str | None = None,
    key: str | None = None,
    queue: str | None = None,
) -> JobHandle:
    """Run every job of `jobs` ((class, method) or (class, method, params)) in the
    background, then `callback` once all have ended, with the list of their results (in
    this order) as its first parameter. A job that failed or was cancelled gives None, and
    the callback is then cancelled unless `run_callback_on_failure`. Returns at once: a
    handle on the callback (`id`, the batch's id; `wait()` gives the callback's result).

    With no daemon answering, the batch falls back as `run_background_job` does: spooled
    whole and run by the host's drainer (or the daemon once back); `fallback="error"`
    raises DaemonUnreachable instead."""
    spec = make_batch_spec(
        jobs,
        callback,
        run_callback_on_failure=run_callback_on_failure,
        delay=delay,
        priority=priority,
        at=at,
        key=key,
        queue=queue,
    )
    return _client_for(config, socket).submit(spec, fallback=fallback)
