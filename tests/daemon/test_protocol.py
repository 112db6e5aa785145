"""Garbage, truncated and oversized frames close that connection with an error, and the
daemon keeps serving everyone else."""

from __future__ import annotations

import socket
import struct

import msgspec

from bgjobs.protocol import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Error,
    ErrorCode,
    FrameEncoder,
    Hello,
    Ping,
    Reply,
    decode_reply,
)
from tests.support.workspace import Workspace


def _connect(workspace: Workspace) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(workspace.socket_path))
    return sock


def _read_reply(sock: socket.socket) -> Reply | None:
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    length = struct.unpack(">I", header)[0]
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return decode_reply(body)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _assert_still_serving(workspace: Workspace) -> None:
    with workspace.client() as client:
        client.ping()


def test_garbage_gets_an_error_and_a_closed_connection(workspace: Workspace) -> None:
    workspace.start_daemon()
    with _connect(workspace) as sock:
        sock.sendall(struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
        reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_REQUEST
        assert _closed(sock)
    _assert_still_serving(workspace)


def test_oversized_frame_is_refused_before_it_is_read(workspace: Workspace) -> None:
    workspace.start_daemon()
    with _connect(workspace) as sock:
        sock.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1) + b"x" * 1000)
        reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.FRAME_TOO_LARGE
        assert _closed(sock)
    _assert_still_serving(workspace)


def test_truncated_frame_then_hangup(workspace: Workspace) -> None:
    workspace.start_daemon()
    with _connect(workspace) as sock:
        sock.sendall(struct.pack(">I", 100) + b"only part")
        sock.shutdown(socket.SHUT_WR)
        assert _read_reply(sock) is None
    _assert_still_serving(workspace)


def test_requests_before_hello_and_wrong_versions_are_refused(workspace: Workspace) -> None:
    workspace.start_daemon()
    encoder = FrameEncoder()
    with _connect(workspace) as sock:
        sock.sendall(encoder.encode(Ping(rid=7)))
        reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_REQUEST
        assert reply.rid == 7 and _closed(sock)
    with _connect(workspace) as sock:
        sock.sendall(encoder.encode(Hello(version=PROTOCOL_VERSION + 1, rid=1)))
        reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.VERSION_MISMATCH
    _assert_still_serving(workspace)


def test_unknown_message_type(workspace: Workspace) -> None:
    workspace.start_daemon()
    encoder = FrameEncoder()
    with _connect(workspace) as sock:
        sock.sendall(encoder.encode(Hello(version=PROTOCOL_VERSION, rid=1)))
        assert _read_reply(sock) is not None
        body = msgspec.msgpack.encode({"type": "DropTables", "rid": 2})
        sock.sendall(struct.pack(">I", len(body)) + body)
        reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_REQUEST
    _assert_still_serving(workspace)


def test_pipelined_requests_get_their_own_replies(workspace: Workspace) -> None:
    workspace.start_daemon()
    encoder = FrameEncoder()
    with _connect(workspace) as sock:
        frames = encoder.encode(Hello(version=PROTOCOL_VERSION, rid=1))
        frames += b"".join(encoder.encode(Ping(rid=rid)) for rid in range(2, 12))
        sock.sendall(frames)
        rids = []
        for _ in range(11):
            reply = _read_reply(sock)
            assert reply is not None
            rids.append(reply.rid)
        assert sorted(rids) == list(range(1, 12))
