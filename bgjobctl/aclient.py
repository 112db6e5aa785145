"""The asyncio twin of the client library, for async applications:

    handle = await run_background_job_async("LessonCreatedService", "handle", ["Intro"])
    result = await handle.wait(10)

Requests are pipelined on one connection per event loop: each carries its own id, and a
reader task hands every reply to the request that waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from bgjobctl.address import Address, resolve_address
from bgjobctl.client import DEFAULT_TIMEOUT, ConnectionBroke
from bgjobctl.fallback import POLL_SECONDS, SpooledJob, Spooler, remaining, through_daemon
from bgjobctl.library import (
    Fallback,
    LinkSpec,
    discovery_key,
    make_spec,
    result_of,
    spool_or_raise,
)
from bgjobctl.replies import expect
from bgjobs.errors import DaemonUnreachable, ProtocolError, UsageError
from bgjobs.model import JobInfo, JobSpec, Priority
from bgjobs.protocol import (
    MAX_REPLY_FRAME_BYTES,
    PROTOCOL_VERSION,
    Event,
    FrameEncoder,
    FrameError,
    FrameReader,
    Get,
    Hello,
    JobReply,
    Reply,
    Request,
    Submit,
    Submitted,
    Subscribe,
    Subscribed,
    Welcome,
    decode_reply,
)

_R = TypeVar("_R")


class AsyncConnection:
    """One connection, opened on first use and opened again after it broke. Each opening
    has its own reader task and its own table of waiting requests, so the end of an old
    one never touches a new one."""

    def __init__(self, address: Address, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._stream: asyncio.StreamReader | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._events: dict[int, asyncio.Queue[Event]] = {}
        self._encoder = FrameEncoder()
        self._next_rid = 0
        self._connecting = asyncio.Lock()

    async def _connect(self) -> None:
        try:
            if self.address.unix_path is not None:
                reader, writer = await asyncio.open_unix_connection(str(self.address.unix_path))
            else:
                reader, writer = await asyncio.open_connection(self.address.host, self.address.port)
        except OSError as exc:
            raise DaemonUnreachable(
                f"no daemon answers on {self.address.describe()} ({exc.strerror or exc})"
            ) from None
        self._writer, self._stream, self._waiting = writer, reader, {}
        self._reader_task = asyncio.create_task(self._read(reader, writer, self._waiting))
        try:
            welcome = await self._send(
                Hello(version=PROTOCOL_VERSION, token=self.address.read_token(), client="aclient")
            )
            expect(welcome, Welcome)
        except BaseException:
            self._drop()
            raise

    async def _read(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        waiting: dict[int, asyncio.Future[Reply]],
    ) -> None:
        frames = FrameReader(MAX_REPLY_FRAME_BYTES)
        failure: Exception = ConnectionBroke("the daemon closed the connection")
        try:
            while chunk := await reader.read(262144):
                for body in frames.feed(chunk):
                    self._route(decode_reply(body), waiting)
        except FrameError as exc:
            failure = ProtocolError(str(exc))
        except OSError as exc:
            failure = ConnectionBroke(f"the daemon went away: {exc}")
        finally:
            # Also reached when the loop shuts down and cancels this task: close the
            # transport here, since nobody else will. The next call connects afresh.
            if self._writer is writer:
                self._writer = None
            writer.close()
            for future in waiting.values():
                if not future.done():
                    future.set_exception(failure)
            waiting.clear()

    def _route(self, reply: Reply, waiting: dict[int, asyncio.Future[Reply]]) -> None:
        if isinstance(reply, Event):
            queue = self._events.get(reply.rid)
            if queue is not None:
                queue.put_nowait(reply)
            return
        future = waiting.pop(reply.rid, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def _drop(self) -> None:
        """Give up this connection (its reader fails what still waits on it)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def _send(self, request: Request) -> Reply:
        assert self._writer is not None
        self._next_rid += 1
        rid = self._next_rid
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self._writer.write(self._encoder.encode(msgspec.structs.replace(request, rid=rid)))
        return await future

    async def _ensure_connected(self) -> None:
        async with self._connecting:
            task = self._reader_task
            if self._writer is not None and task is not None and not self._waiting:
                # The daemon closes idle connections. If that happened while this loop was
                # not running, let it read the end of stream now (two turns: one to poll,
                # one to run the callback), so no request is sent into a closed socket.
                for _ in range(2):
                    await asyncio.sleep(0)
                if self._stream is not None and self._stream.at_eof():
                    await asyncio.gather(task, return_exceptions=True)
            if self._writer is None:
                await self._connect()

    async def call(self, request: Request, kind: type[_R]) -> _R:
        """The reply; DaemonUnreachable when no daemon answers within the timeout (the
        connection is dropped: a late reply must not be taken for a later request's)."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._ensure_connected()
                reply = await self._send(request)
        except TimeoutError:
            self._drop()
            raise DaemonUnreachable("the daemon did not answer in time") from None
        return expect(reply, kind)

    async def subscribe(self, job_ids: Sequence[int]) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        await self._ensure_connected()
        self._events[self._next_rid + 1] = queue
        expect(await self._send(Subscribe(job_ids=list(job_ids))), Subscribed)
        return queue

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


class AsyncClient:
    def __init__(self, address: Address) -> None:
        self.address = address
        self._connection = AsyncConnection(address)

    async def submit(self, specs: Sequence[JobSpec]) -> Submitted:
        """Like `Client.submit`: resent once on a fresh connection when the connection
        broke with the request sent, if every job carries an idempotency key."""
        request = Submit(jobs=list(specs))
        try:
            return await self._connection.call(request, Submitted)
        except ConnectionBroke:
            if not request.jobs or any(spec.key is None for spec in request.jobs):
                raise
        return await self._connection.call(request, Submitted)

    async def get(self, job_id: int) -> JobInfo:
        return (await self._connection.call(Get(job_id=job_id), JobReply)).job

    async def wait(self, job_id: int, timeout: float | None = None) -> JobInfo:
        """The job's record once it is final (a connection of its own carries the events)."""
        connection = AsyncConnection(self.address)
        try:
            async with asyncio.timeout(timeout):
                events = await connection.subscribe([job_id])
                while True:
                    job = (await connection.call(Get(job_id=job_id), JobReply)).job
                    if job.state.is_final:
                        return job
                    while not (await events.get()).event.state.is_final:
                        pass
        finally:
            await connection.close()

    async def close(self) -> None:
        await self._connection.close()


class AsyncJobHandle:
    """`JobHandle` for asyncio: a spooled job (no daemon answered) behaves like any other."""

    def __init__(
        self,
        id: int | None,
        last_id: int | None = None,
        client: AsyncClient | None = None,
        *,
        spooled: SpooledJob | None = None,
    ) -> None:
        self._id = id
        self._last_id = last_id if last_id is not None else id
        self.client = client
        self.spooled = spooled

    def __repr__(self) -> str:
        return f"AsyncJobHandle(id={self._id!r}, last_id={self._last_id!r})"

    @property
    def id(self) -> int | None:
        """The job's id; for a spooled job, None until it is stored (see `resolve`)."""
        if self._id is None and self.spooled is not None:
            self._found(self.spooled.ids())  # one indexed read of a local file
        return self._id

    @property
    def last_id(self) -> int | None:
        self.id  # noqa: B018  # resolves a spooled job's ids
        return self._last_id

    def _found(self, ids: list[int] | None) -> None:
        if ids:
            self._id, self._last_id = ids[0], ids[-1]

    async def resolve(self) -> int | None:
        """The job's id, read off the event loop for a spooled job."""
        if self._id is None and self.spooled is not None:
            self._found(await asyncio.to_thread(self.spooled.ids))
        return self._id

    async def job(self) -> JobInfo:
        job_id = await self.resolve()
        if job_id is None:
            raise UsageError("the job waits in the spool (no daemon answered): no record yet")
        if self.client is not None:
            try:
                return await self.client.get(job_id)
            except DaemonUnreachable:
                if self.spooled is None:
                    raise
        assert self.spooled is not None
        found = await asyncio.to_thread(self.spooled.stored, job_id)
        if found is None:
            raise DaemonUnreachable(f"no daemon answers and job {job_id} cannot be read")
        return found

    async def wait(self, timeout: float | None = None) -> Any:
        """The result (of the chain's last link); JobFailed/JobCancelled otherwise."""
        if self.spooled is None:
            assert self.client is not None and self._last_id is not None
            return result_of(await self.client.wait(self._last_id, timeout))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            return result_of(await self._wait_spooled(self.spooled, deadline))
        except TimeoutError:
            raise TimeoutError(f"the job did not finish within {timeout}s") from None

    async def _wait_spooled(self, spooled: SpooledJob, deadline: float | None) -> JobInfo:
        while True:
            await self.resolve()
            last = self._last_id
            if last is not None:
                job = await asyncio.to_thread(spooled.stored, last)
                if job is not None and job.state.is_final:
                    return job
                if self.client is not None:
                    try:
                        return await self.client.wait(last, through_daemon(deadline))
                    except (DaemonUnreachable, OSError):
                        pass  # not up (yet, or again): the store tells
                    except TimeoutError:
                        pass  # a slice: see `through_daemon`
            left = remaining(deadline)
            await asyncio.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))


# One client per event loop (a connection belongs to its loop), forgotten with the loop.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str | None, ...], tuple[AsyncClient, Spooler]]
] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


async def close_clients() -> None:
    """Close this event loop's connections kept by `run_background_job_async`."""
    with _clients_lock:
        per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client, _ in per_loop.values():
        await client.close()


def _client_for(config: str | None, socket: str | None) -> tuple[AsyncClient, Spooler]:
    key = discovery_key(config, socket)
    with _clients_lock:
        per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
        found = per_loop.get(key)
        if found is None:
            address, loaded = resolve_address(config, socket)
            config_path = str(loaded.path) if loaded.path else None
            found = per_loop[key] = (AsyncClient(address), Spooler(loaded, config_path, socket))
        return found


async def run_background_job_async(
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
) -> AsyncJobHandle:
    """`run_background_job`, for code running in an asyncio event loop."""
    spec = make_spec(
        class_name, method, params, delay, priority=priority, at=at, then=then, key=key
    )
    client, spooler = _client_for(config, socket)
    try:
        submitted = await client.submit([spec])
    except DaemonUnreachable:
        if fallback == "error":
            raise
        # Synchronous on purpose: a small local write (see bgjobctl.fallback), cheaper
        # than a hop to a thread.
        return AsyncJobHandle(id=None, client=client, spooled=spool_or_raise(spooler, spec))
    last = submitted.last_ids[0] if submitted.last_ids else submitted.ids[0]
    return AsyncJobHandle(id=submitted.ids[0], last_id=last, client=client)
