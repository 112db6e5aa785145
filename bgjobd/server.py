"""The daemon's side of the socket: handshake, framing, routing requests, typed errors,
and the limits that keep any crowd of connections from wedging the daemon or its memory.

A connection must say `Hello` first (within HANDSHAKE_TIMEOUT); over TCP it carries the
token. Before that, frames are limited to PREAUTH_MAX_FRAME_BYTES, and over TCP at most
MAX_UNAUTHENTICATED connections may be waiting for their Hello. Garbage, a truncated frame
or one over the size cap closes that connection with an `Error`, and nothing else happens.
Requests run concurrently, replies carry their `rid`.

Memory: the body of a large frame is read only once the shared `BufferBudget` has room
for it (the connection is not read meanwhile); a frame left half sent for `stall_timeout`,
or waiting for room twice that, closes its connection with an `Error`; a connection with
nothing in flight and no subscription closes after `idle_timeout`, without a word
(clients reconnect by themselves); a connection whose replies the peer does not read, or
with MAX_IN_FLIGHT requests being handled, is not read until that clears. A closed
connection gives back everything at once.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from bgjobd.budget import BufferBudget
from bgjobd.handlers import dispatch, submit_at_once
from bgjobd.handlers.context import Context
from bgjobd.store.offline import StoreRetry
from bgjobs import __version__
from bgjobs.errors import BadParams, BgjobsError, RefusedError, RequestFailed
from bgjobs.protocol import (
    HANDSHAKE_TIMEOUT,
    MAX_FRAME_BYTES,
    PREAUTH_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    SMALL_FRAME_BYTES,
    Error,
    ErrorCode,
    Event,
    FrameEncoder,
    FrameError,
    FrameReader,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_request,
)
from bgjobs.settings import DaemonSettings
from bgjobs.sizes import format_size, parse_size

MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
"""A subscriber that stops reading is disconnected past this much unsent data."""
MAX_UNAUTHENTICATED: Final = 64
"""TCP connections that may wait for their Hello at once; more are closed at once."""
MAX_IN_FLIGHT: Final = 64
"""Requests of one connection handled at once; past it the connection is not read until
replies have gone out, so one peer cannot queue unbounded work (or replies)."""


@dataclass(frozen=True)
class ConnectionLimits:
    buffer_budget: int = 64 * 1024 * 1024
    stall_timeout: float = 30.0
    idle_timeout: float = 300.0
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_unauthenticated: int = MAX_UNAUTHENTICATED

    @classmethod
    def of(cls, settings: DaemonSettings) -> ConnectionLimits:
        return cls(
            buffer_budget=parse_size(settings.buffer_budget),
            stall_timeout=settings.stall_timeout,
            idle_timeout=settings.idle_timeout,
        )


class Gate:
    """Who may talk to the daemon: on a Unix socket, our own uid, `allowed_uids` and the
    members of `allowed_gids` (by the peer's primary group or by /etc/group); over TCP,
    whoever presents the token."""

    def __init__(
        self, *, token: str | None, allowed_uids: list[int], allowed_gids: list[int] | None = None
    ) -> None:
        self.token = token
        self.allowed_uids = {os.getuid(), *allowed_uids} if sys.platform != "win32" else set()
        self.allowed_gids = set(allowed_gids or ())
        self._member_uids = self._members_of(self.allowed_gids)

    @property
    def admits_others(self) -> bool:
        """Whether anyone but the daemon's own user may connect (the socket must then be
        reachable by them, and the peer check alone tells them apart)."""
        return bool(self.allowed_gids) or len(self.allowed_uids) > 1

    def admits_peer(self, transport: asyncio.BaseTransport) -> bool:
        if self.token is not None:
            return True  # TCP: judged by the token in Hello
        credentials = self._peer_credentials(transport)
        if credentials is None:
            return True  # no peer credentials here: the socket's mode (0600) is the gate
        uid, gid = credentials
        return uid in self.allowed_uids or gid in self.allowed_gids or uid in self._member_uids

    def admits_hello(self, hello: Hello) -> bool:
        if self.token is None:
            return True
        return hello.token is not None and hmac.compare_digest(
            hello.token.encode(), self.token.encode()
        )

    @staticmethod
    def _peer_credentials(transport: asyncio.BaseTransport) -> tuple[int, int] | None:
        """The uid and primary gid of the process at the other end (Linux), else None."""
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(socket, "SO_PEERCRED"):
            return None
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        _pid, uid, gid = struct.unpack("3i", creds)
        return int(uid), int(gid)

    @staticmethod
    def _members_of(gids: set[int]) -> set[int]:
        """The uids listed as supplementary members of these groups, read once at start."""
        import grp
        import pwd

        uids: set[int] = set()
        for gid in gids:
            try:
                names = grp.getgrgid(gid).gr_mem
            except KeyError:
                continue
            for name in names:
                try:
                    uids.add(pwd.getpwnam(name).pw_uid)
                except KeyError:
                    continue
        return uids


class Connections:
    """Every open connection and what they share: the gate, the limits (read again on each
    sweep, so a reload applies them), the buffer budget, and the sweep that closes the
    connections past a deadline."""

    def __init__(
        self,
        limits: Callable[[], ConnectionLimits],
        gate: Gate,
        make_context: Callable[[Callable[[Reply], None]], Context],
        on_error: Callable[[str], None],
    ) -> None:
        self._limits_of = limits
        self.limits = limits()
        self.gate = gate
        self.make_context = make_context
        self.on_error = on_error
        self.budget = BufferBudget(self.limits.buffer_budget)
        self.unauthenticated = 0
        self._open: set[Connection] = set()
        self._sweep_timer: asyncio.TimerHandle | None = None

    def new_connection(self) -> Connection:
        """The protocol factory for `create_server`."""
        return Connection(self)

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        if self._sweep_timer is None:
            self._schedule_sweep()

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)

    async def close_all(self) -> None:
        """Close every connection and let each one's end run (it cancels the requests
        still waiting on it): the daemon does this before its store closes."""
        for connection in list(self._open):
            connection.close()
        for _ in range(100):  # a few loop turns; a transport is never left waiting long
            if not self._open:
                break
            await asyncio.sleep(0)

    def _schedule_sweep(self) -> None:
        limits = self.limits
        shortest = min(limits.handshake_timeout, limits.stall_timeout, limits.idle_timeout)
        interval = max(0.05, min(1.0, shortest / 5))
        self._sweep_timer = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = None
        self.limits = self._limits_of()
        self.budget.set_limit(self.limits.buffer_budget)
        now = asyncio.get_running_loop().time()
        for connection in list(self._open):
            connection.check_deadlines(now)
        if self._open:
            self._schedule_sweep()


class Connection(asyncio.Protocol):
    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        self._reader = FrameReader(PREAUTH_MAX_FRAME_BYTES)
        self._encoder = FrameEncoder()
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._context: Context | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counted_unauthenticated = False
        self._reserved = 0
        """Bytes of the budget taken for the large frame being received."""
        self._reading_paused = False
        self._writing_paused = False
        self._writable = asyncio.Event()
        """Set while the transport takes more: a handler waits for it before it starts, so
        that a client that does not read its replies gets no more of them built."""
        self._writable.set()
        self._resume_scheduled = False
        self._in_flight: dict[int, int] = {}
        """Requests being handled, by rid (a client may reuse one)."""
        self._in_flight_total = 0
        now = self._loop.time()
        self._opened_at = self._last_progress = self._last_active = self._waiting_since = now

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        connections = self._connections
        connections.add(self)
        if not connections.gate.admits_peer(transport):
            self._fail(ErrorCode.UNAUTHORIZED, "this user may not use the daemon's socket")
            return
        if connections.gate.token is not None:  # TCP: anyone may connect, so count them
            if connections.unauthenticated >= connections.limits.max_unauthenticated:
                self._fail(
                    ErrorCode.BAD_REQUEST, "too many connections are waiting for their Hello"
                )
                return
            connections.unauthenticated += 1
            self._counted_unauthenticated = True

    def data_received(self, data: bytes) -> None:
        self._last_progress = self._last_active = self._loop.time()
        self._reader.push(data)
        self._drain()

    def eof_received(self) -> bool | None:
        return None  # close; a partial frame at EOF is simply dropped with the connection

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._writable.set()
        self._schedule_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._release_buffers()
        context, self._context = self._context, None
        if context is not None:
            context.detach()
        for task in self._tasks:
            task.cancel()
        self._transport = None

    # deadlines -----------------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Close this connection if it is past one of its deadlines (called by the sweep)."""
        if not self._is_open():
            return
        limits = self._connections.limits
        if self._context is None:
            if now - self._opened_at > limits.handshake_timeout:
                self._fail(ErrorCode.BAD_REQUEST, "no Hello within the handshake timeout")
        elif self._connections.budget.is_waiting(self):
            # Twice the stall timeout: whatever held the room when this one came is gone
            # by then (it completed, or stalled and was closed), so only a queue of
            # stalling frames ahead of it, i.e. an attack, makes it give up.
            if now - self._waiting_since > 2 * limits.stall_timeout:
                self._fail(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"no room to receive a frame of {self._reader.wanted} bytes within "
                    f"{2 * limits.stall_timeout:g} s (the daemon's buffer budget of "
                    f"{format_size(limits.buffer_budget)} is in use); try again",
                )
        elif self._reader.pending and not self._backlogged():
            if now - self._last_progress > limits.stall_timeout:
                self._fail(
                    ErrorCode.BAD_REQUEST,
                    f"frame incomplete: nothing received for {limits.stall_timeout:g} s",
                )
        elif (
            not self._in_flight_total
            and not self._context.subscriptions
            and now - self._last_active > limits.idle_timeout
        ):
            assert self._transport is not None
            self._transport.close()  # without a word: an idle client reconnects when it needs

    # reading -------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Handle every complete frame, as far as the budget and backpressure allow."""
        try:
            while self._is_open():
                if self._backlogged():
                    self._pause_reading()
                    return
                wanted = self._reader.wanted
                if wanted and not self._reserved and not self._reserve(wanted):
                    return
                body = self._reader.pop()
                if body is None:
                    return
                if self._reserved:  # that was the large frame the room was taken for
                    self._connections.budget.release(self._reserved)
                    self._reserved = 0
                request = decode_request(body)
                del body
                if self._context is None:
                    self._handshake(request)
                else:
                    self._handle(self._context, request)
        except FrameError as exc:
            self._fail(exc.code, str(exc))

    def _reserve(self, size: int) -> bool:
        budget = self._connections.budget
        if size > budget.limit:
            raise FrameError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {size} bytes exceeds the daemon's buffer budget of {budget.limit}",
            )
        if budget.reserve(self, size, self._granted):
            self._reserved = size
            return True
        self._waiting_since = self._loop.time()
        self._pause_reading()
        return False

    def _granted(self, size: int) -> None:
        self._reserved = size
        self._last_progress = self._loop.time()  # the stall clock starts now, not when queued
        self._schedule_resume()

    def _backlogged(self) -> bool:
        return self._writing_paused or self._in_flight_total >= MAX_IN_FLIGHT

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _schedule_resume(self) -> None:
        if self._reading_paused and not self._resume_scheduled:
            self._resume_scheduled = True
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_scheduled = False
        if not self._is_open() or not self._reading_paused:
            return
        self._reading_paused = False
        assert self._transport is not None
        self._transport.resume_reading()
        self._drain()

    def _is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def _release_buffers(self) -> None:
        connections = self._connections
        if self._counted_unauthenticated:
            self._counted_unauthenticated = False
            connections.unauthenticated -= 1
        connections.budget.forget(self)
        if self._reserved:
            connections.budget.release(self._reserved)
            self._reserved = 0
        self._reader.close()

    # internals -----------------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        if not isinstance(reply, Event):
            self._replied(reply.rid)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        frame = self._encoder.encode(reply)
        if len(frame) > SMALL_FRAME_BYTES:
            self._encoder = FrameEncoder()  # not a large buffer kept for the connection's life
        transport.write(frame)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            transport.abort()

    def _replied(self, rid: int) -> None:
        count = self._in_flight.get(rid)
        if count is None:
            return
        if count == 1:
            del self._in_flight[rid]
        else:
            self._in_flight[rid] = count - 1
        self._in_flight_total -= 1
        if not self._in_flight_total:
            self._last_active = self._loop.time()
        if not self._backlogged():
            self._schedule_resume()

    def _fail(self, code: ErrorCode, message: str, rid: int = 0) -> None:
        self._send(Error(rid=rid, code=code, message=message))
        if self._transport is not None:
            self._transport.close()
        self._release_buffers()  # now: the close waits for the peer to take the Error

    def _handshake(self, request: Request) -> None:
        if not isinstance(request, Hello):
            self._fail(ErrorCode.BAD_REQUEST, "the first message must be Hello", request.rid)
        elif request.version != PROTOCOL_VERSION:
            self._fail(
                ErrorCode.VERSION_MISMATCH,
                f"protocol version {request.version} is not {PROTOCOL_VERSION}",
                request.rid,
            )
        elif not self._connections.gate.admits_hello(request):
            self._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token", request.rid)
        else:
            self._reader.max_frame = MAX_FRAME_BYTES
            if self._counted_unauthenticated:
                self._counted_unauthenticated = False
                self._connections.unauthenticated -= 1
            self._context = self._connections.make_context(self._send)
            self._send(
                Welcome(
                    rid=request.rid,
                    version=PROTOCOL_VERSION,
                    server_version=__version__,
                    pid=os.getpid(),
                )
            )

    def _handle(self, context: Context, request: Request) -> None:
        self._in_flight[request.rid] = self._in_flight.get(request.rid, 0) + 1
        self._in_flight_total += 1
        try:
            if submit_at_once(context, request):
                return  # replied from inside its commit
        except Exception as exc:  # noqa: BLE001  # every failure becomes a typed Error reply
            self._send(self._error_reply(request.rid, exc))
            return
        task = asyncio.create_task(self._reply(context, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, context: Context, request: Request) -> None:
        """The request handled, and its reply (or the Error its failure makes) sent. Not
        begun while the client leaves earlier replies unread: requests read before the
        backlog stopped the reading wait, rather than each building its reply."""
        while self._writing_paused:  # again after each wake: the one before may refill it
            await self._writable.wait()
        try:
            reply = await dispatch(context, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # every failure becomes a typed Error reply
            reply = self._error_reply(request.rid, exc)
        self._send(reply)

    def _error_reply(self, rid: int, exc: BaseException) -> Error:
        if isinstance(exc, RequestFailed):
            return Error(rid=rid, code=exc.code, message=str(exc))
        if isinstance(exc, StoreRetry):  # the store cannot now (reconnecting): try again
            return Error(rid=rid, code=ErrorCode.STORE_UNAVAILABLE, message=str(exc))
        if isinstance(exc, RefusedError):
            return Error(rid=rid, code=ErrorCode.REFUSED, message=str(exc))
        if isinstance(exc, BadParams | BgjobsError):
            return Error(rid=rid, code=ErrorCode.BAD_PARAMS, message=str(exc))
        self._connections.on_error(f"internal error handling a request: {exc!r}")
        return Error(rid=rid, code=ErrorCode.INTERNAL, message=f"internal error: {exc!r}")
