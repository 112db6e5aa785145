"""The daemon's side of the socket: handshake, framing, routing requests, typed errors.

A connection must say `Hello` first (within HANDSHAKE_TIMEOUT); over TCP it carries the
token. Garbage, a truncated frame or one over the size cap closes that connection with an
`Error`, and nothing else happens. Requests run concurrently, replies carry their `rid`.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import struct
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

from bgjobd.handlers import dispatch
from bgjobd.handlers.context import Context
from bgjobs import __version__
from bgjobs.errors import BadParams, BgjobsError, RefusedError, RequestFailed
from bgjobs.protocol import (
    HANDSHAKE_TIMEOUT,
    PROTOCOL_VERSION,
    Error,
    ErrorCode,
    FrameEncoder,
    FrameError,
    FrameReader,
    Hello,
    Reply,
    Request,
    Welcome,
    decode_request,
)

MAX_WRITE_BUFFER: Final = 64 * 1024 * 1024
"""A subscriber that stops reading is disconnected past this much unsent data."""


def peer_uid(transport: asyncio.BaseTransport) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux), else None."""
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


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


class Connection(asyncio.Protocol):
    def __init__(
        self,
        make_context: Callable[[Callable[[Reply], None]], Context],
        gate: Gate,
        on_error: Callable[[str], None],
    ) -> None:
        self._make_context = make_context
        self._gate = gate
        self._on_error = on_error
        self._reader = FrameReader()
        self._encoder = FrameEncoder()
        self._transport: asyncio.Transport | None = None
        self._context: Context | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if not self._gate.admits_peer(transport):
            self._fail(ErrorCode.UNAUTHORIZED, "this user may not use the daemon's socket")
            return
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        try:
            for body in self._reader.feed(data):
                request = decode_request(body)
                if self._context is None:
                    self._handshake(request)
                else:
                    self._handle(self._context, request)
                if self._transport is None or self._transport.is_closing():
                    return
        except FrameError as exc:
            self._fail(exc.code, str(exc))

    def eof_received(self) -> bool | None:
        return None  # close; a partial frame at EOF is simply dropped with the connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self._context is not None:
            for token in self._context.subscriptions:
                self._context.engine.events.unsubscribe(token)
        for task in self._tasks:
            task.cancel()
        self._transport = None

    # internals -----------------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(self._encoder.encode(reply))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            transport.abort()

    def _fail(self, code: ErrorCode, message: str, rid: int = 0) -> None:
        self._send(Error(rid=rid, code=code, message=message))
        if self._transport is not None:
            self._transport.close()

    def _handshake_expired(self) -> None:
        self._fail(ErrorCode.BAD_REQUEST, "no Hello within the handshake timeout")

    def _handshake(self, request: Request) -> None:
        if not isinstance(request, Hello):
            self._fail(ErrorCode.BAD_REQUEST, "the first message must be Hello", request.rid)
        elif request.version != PROTOCOL_VERSION:
            self._fail(
                ErrorCode.VERSION_MISMATCH,
                f"protocol version {request.version} is not {PROTOCOL_VERSION}",
                request.rid,
            )
        elif not self._gate.admits_hello(request):
            self._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token", request.rid)
        else:
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
            self._context = self._make_context(self._send)
            self._send(
                Welcome(
                    rid=request.rid,
                    version=PROTOCOL_VERSION,
                    server_version=__version__,
                    pid=os.getpid(),
                )
            )

    def _handle(self, context: Context, request: Request) -> None:
        try:
            outcome = dispatch(context, request)
        except Exception as exc:  # noqa: BLE001  # every failure becomes a typed Error reply
            self._send(self._error_reply(request.rid, exc))
            return
        if outcome is None:
            return  # the handler replies by itself
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(lambda done: self._reply_from(request.rid, done))
        elif isinstance(outcome, Coroutine):
            task = asyncio.create_task(self._finish(request.rid, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._send(outcome)

    def _reply_from(self, rid: int, done: asyncio.Future[Reply]) -> None:
        error = done.exception()
        self._send(self._error_reply(rid, error) if error is not None else done.result())

    async def _finish(self, rid: int, outcome: Coroutine[Any, Any, Reply]) -> None:
        try:
            reply = await outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # every failure becomes a typed Error reply
            reply = self._error_reply(rid, exc)
        self._send(reply)

    def _error_reply(self, rid: int, exc: BaseException) -> Error:
        if isinstance(exc, RequestFailed):
            return Error(rid=rid, code=exc.code, message=str(exc))
        if isinstance(exc, RefusedError):
            return Error(rid=rid, code=ErrorCode.REFUSED, message=str(exc))
        if isinstance(exc, BadParams | BgjobsError):
            return Error(rid=rid, code=ErrorCode.BAD_PARAMS, message=str(exc))
        self._on_error(f"internal error handling a request: {exc!r}")
        return Error(rid=rid, code=ErrorCode.INTERNAL, message=f"internal error: {exc!r}")
