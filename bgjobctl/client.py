"""A blocking client of `bgjobd`: one connection, safe to share between threads, and
reconnected transparently in a forked child."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

import msgspec

from bgjobctl.address import Address
from bgjobctl.replies import expect
from bgjobs.errors import DaemonUnreachable, ProtocolError
from bgjobs.model import JobEvent, JobInfo, JobSpec, JobState, PauseKind, Stats
from bgjobs.protocol import (
    MAX_REPLY_FRAME_BYTES,
    PROTOCOL_VERSION,
    BulkDone,
    Cancel,
    CancelMatching,
    Event,
    FrameEncoder,
    FrameError,
    FrameReader,
    Get,
    GetLog,
    GetOutput,
    GetStats,
    Hello,
    JobList,
    JobReply,
    ListJobs,
    ListNodes,
    ListSchedules,
    LogChunk,
    NodeList,
    OutputChunk,
    PauseJobs,
    PauseReply,
    Ping,
    Pong,
    Prune,
    Pruned,
    Reply,
    Request,
    RetriedMany,
    RetryFailed,
    RetryJob,
    RetryMatching,
    ScheduleInfo,
    ScheduleList,
    StatsReply,
    Submit,
    Submitted,
    Subscribe,
    Subscribed,
    Welcome,
    decode_reply,
)

DEFAULT_TIMEOUT: Final = 30.0
_R = TypeVar("_R")


class ConnectionBroke(DaemonUnreachable):
    """An open connection failed (reset, closed) after a request may have gone out: the
    daemon may or may not have acted on it. A submit with idempotency keys may be resent."""


def open_socket(address: Address, timeout: float | None) -> socket.socket:
    try:
        if address.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(str(address.unix_path))
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((address.host, address.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as exc:
        raise DaemonUnreachable(
            f"no daemon answers on {address.describe()} ({exc.strerror}); is bgjobd running?"
        ) from None
    except OSError as exc:
        raise DaemonUnreachable(f"cannot reach the daemon at {address.describe()}: {exc}") from None
    return sock


class Connection:
    """One handshaken connection; not thread-safe by itself (Client locks around it)."""

    def __init__(self, address: Address, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self._sock = open_socket(address, timeout)
        self._encoder = FrameEncoder()
        self._reader = FrameReader(MAX_REPLY_FRAME_BYTES)
        self._ready: list[bytes] = []
        self._next_rid = 0
        self.pid = os.getpid()
        try:
            welcome = self.call(
                Hello(version=PROTOCOL_VERSION, token=address.read_token(), client="bgjobctl")
            )
            self.server = expect(welcome, Welcome)
        except BaseException as exc:
            self._sock.close()
            if isinstance(exc, TimeoutError):  # e.g. a paused daemon: its socket accepts
                raise DaemonUnreachable("the daemon did not answer in time") from None
            raise

    def send(self, request: Request) -> int:
        self._next_rid += 1
        message = msgspec.structs.replace(request, rid=self._next_rid)
        try:
            self._sock.sendall(self._encoder.encode(message))
        except OSError as exc:
            raise ConnectionBroke(f"the daemon went away: {exc}") from None
        return self._next_rid

    def receive(self) -> Reply:
        while not self._ready:
            try:
                chunk = self._sock.recv(262144)
            except TimeoutError:
                raise
            except OSError as exc:
                raise ConnectionBroke(f"the daemon went away: {exc}") from None
            if not chunk:
                raise ConnectionBroke("the daemon closed the connection")
            try:
                self._ready.extend(self._reader.feed(chunk))
            except FrameError as exc:
                raise ProtocolError(str(exc)) from None
        try:
            return decode_reply(self._ready.pop(0))
        except FrameError as exc:
            raise ProtocolError(str(exc)) from None

    def call(self, request: Request) -> Reply:
        rid = self.send(request)
        while True:
            reply = self.receive()
            if reply.rid == rid or (reply.rid == 0 and not isinstance(reply, Event)):
                return reply

    def hung_up(self) -> bool:
        """Whether the daemon closed this connection while it sat idle (e.g. it restarted),
        found without sending anything, so a request is never sent twice."""
        if self._sock.fileno() < 0:
            return True
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable) and self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()


class EventStream:
    """An iterator of job events; close it (or use `with`) to unsubscribe."""

    def __init__(self, address: Address, job_ids: Sequence[int]) -> None:
        self._connection = Connection(address, timeout=DEFAULT_TIMEOUT)
        try:
            rid = self._connection.send(Subscribe(job_ids=list(job_ids)))
            while (reply := self._connection.receive()).rid != rid or isinstance(reply, Event):
                pass
            expect(reply, Subscribed)
            self._connection.settimeout(None)
        except BaseException:
            self._connection.close()
            raise

    def __iter__(self) -> Iterator[JobEvent]:
        return self

    def __next__(self) -> JobEvent:
        while True:
            reply = self._connection.receive()
            if isinstance(reply, Event):
                return reply.event

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Client:
    """Typed requests to the daemon over one shared connection."""

    def __init__(self, address: Address, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def _call(self, request: Request, kind: type[_R]) -> _R:
        with self._lock:
            connection = self._connected()
            try:
                reply = connection.call(request)
            except BaseException as exc:
                # Whatever broke the exchange (the daemon went, a timeout, an interrupt in
                # the middle of a frame), this connection's state is unknown: drop it, and
                # the next call opens a fresh one.
                self._drop(connection)
                if isinstance(exc, TimeoutError):
                    raise DaemonUnreachable("the daemon did not answer in time") from None
                raise
        return expect(reply, kind)

    def _connected(self) -> Connection:
        """The open connection, or a new one in place of one that is gone (the daemon hung
        up while it sat idle) or was inherited through fork."""
        connection = self._connection
        if connection is not None and (connection.pid != os.getpid() or connection.hung_up()):
            self._drop(connection)
            connection = None
        if connection is None:
            # Forgotten before it is replaced: if no daemon answers, the next call tries
            # again rather than reuse a closed socket.
            connection = self._connection = Connection(self.address, self.timeout)
        return connection

    def _drop(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
        # One inherited through fork is the parent's: left alone, as before.
        if connection.pid == os.getpid():
            connection.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._connection.pid == os.getpid():
                self._connection.close()
            self._connection = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> None:
        self._call(Ping(), Pong)

    def submit(self, specs: Sequence[JobSpec]) -> Submitted:
        """Store the jobs. When the connection breaks with the request sent, a submit whose
        jobs all carry an idempotency key is sent once more on a fresh connection: if the
        daemon had stored them, it answers with the same jobs (`existing`)."""
        request = Submit(jobs=list(specs))
        try:
            return self._call(request, Submitted)
        except ConnectionBroke:
            if not request.jobs or any(spec.key is None for spec in request.jobs):
                raise
        return self._call(request, Submitted)

    def get(self, job_id: int) -> JobInfo:
        return self._call(Get(job_id=job_id), JobReply).job

    def get_with_chain(self, job_id: int) -> JobReply:
        return self._call(Get(job_id=job_id, with_chain=True, with_batch=True), JobReply)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        class_name: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
        queue: str | None = None,
    ) -> JobList:
        request = ListJobs(
            states=list(states),
            class_name=class_name,
            search=search,
            limit=limit,
            offset=offset,
            queue=queue,
        )
        return self._call(request, JobList)

    def cancel(self, job_id: int) -> JobInfo:
        return self._call(Cancel(job_id=job_id), JobReply).job

    def retry(self, job_id: int) -> JobInfo:
        return self._call(RetryJob(job_id=job_id), JobReply).job

    def pause(self, kind: PauseKind, name: str = "", *, resume: bool = False) -> PauseReply:
        """Pause (or resume) claiming the jobs of a class, a queue, or all."""
        return self._call(PauseJobs(kind=kind, name=name, resume=resume), PauseReply)

    def cancel_matching(
        self,
        states: Sequence[JobState] = (),
        class_name: str | None = None,
        search: str | None = None,
        queue: str | None = None,
    ) -> BulkDone:
        request = CancelMatching(
            states=list(states), class_name=class_name, search=search, queue=queue
        )
        return self._call(request, BulkDone)

    def retry_matching(
        self,
        states: Sequence[JobState] = (),
        class_name: str | None = None,
        search: str | None = None,
        queue: str | None = None,
    ) -> BulkDone:
        request = RetryMatching(
            states=list(states), class_name=class_name, search=search, queue=queue
        )
        return self._call(request, BulkDone)

    def retry_failed(self, class_name: str | None = None) -> list[int]:
        return self._call(RetryFailed(class_name=class_name), RetriedMany).ids

    def stats(self) -> Stats:
        return self._call(GetStats(), StatsReply).stats

    def schedules(self) -> list[ScheduleInfo]:
        return self._call(ListSchedules(), ScheduleList).schedules

    def prune(self, *, dry_run: bool = False) -> Pruned:
        return self._call(Prune(dry_run=dry_run), Pruned)

    def nodes(self) -> NodeList:
        """The nodes sharing the queue, and which one answered."""
        return self._call(ListNodes(), NodeList)

    def output(self, job_id: int, offset: int = 0, *, lines: int = 0) -> OutputChunk:
        """The next chunk of a job's captured output (see `GetOutput`)."""
        return self._call(GetOutput(job_id=job_id, offset=offset, lines=lines), OutputChunk)

    def log(self, *, errors: bool = False, offset: int = 0, lines: int = 0) -> LogChunk:
        """The next chunk of the daemon's execution (or error) log (see `GetLog`)."""
        return self._call(GetLog(errors=errors, offset=offset, lines=lines), LogChunk)

    def events(self, job_ids: Sequence[int] = ()) -> EventStream:
        """Job events (of these jobs, or all) on a connection of their own; subscribed
        when this returns."""
        return EventStream(self.address, job_ids)

    def wait(self, job_id: int, timeout: float | None = None) -> JobInfo:
        """Block until the job is final and return its record; TimeoutError after
        `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        connection = Connection(self.address, timeout=timeout)
        try:
            subscribed = connection.send(Subscribe(job_ids=[job_id]))
            while True:
                _set_remaining(connection, deadline)
                reply = connection.receive()
                if reply.rid == subscribed and not isinstance(reply, Event):
                    expect(reply, Subscribed)
                    break
            while True:
                _set_remaining(connection, deadline)
                job = expect(connection.call(Get(job_id=job_id)), JobReply).job
                if job.state.is_final:
                    return job
                # Events that come after the reply above are the only ones that matter:
                # the daemon records a change before it publishes it.
                while True:
                    _set_remaining(connection, deadline)
                    reply = connection.receive()
                    if isinstance(reply, Event) and reply.event.state.is_final:
                        break
        except TimeoutError:
            raise TimeoutError(f"job {job_id} did not finish within {timeout}s") from None
        finally:
            connection.close()


def _set_remaining(connection: Connection, deadline: float | None) -> None:
    if deadline is None:
        connection.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    connection.settimeout(remaining)
