"""No crowd of connections makes the daemon hold unbounded memory (issue 9, finding 7):
half-sent frames fit a shared budget and are closed when they stall, idle connections are
closed, frames before the handshake are small, and a closed connection gives everything
back at once. Memory is the daemon's resident set, read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import selectors
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobctl.aclient import AsyncClient
from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobctl.library import make_spec
from bgjobs.config import load_config
from bgjobs.errors import ConfigError
from bgjobs.model import JobState
from bgjobs.protocol import (
    MAX_FRAME_BYTES,
    PREAUTH_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    SMALL_FRAME_BYTES,
    Error,
    ErrorCode,
    FrameEncoder,
    FrameError,
    FrameReader,
    Get,
    Hello,
    decode_reply,
)
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

MIB = 1024 * 1024
HALF_FRAME = struct.pack(">I", MAX_FRAME_BYTES) + b"x" * (MAX_FRAME_BYTES // 2)
READ_CHUNK = 256 * 1024
"""The most one socket read hands the daemon; a connection waiting for room holds this."""


# The daemon's memory --------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def rss(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """The highest RSS since the last `reset_peak` (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# Raw connections ------------------------------------------------------------------------


def hello_frame(token: str | None = None) -> bytes:
    return FrameEncoder().encode(Hello(version=PROTOCOL_VERSION, token=token))


def unix_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # blocking: waits for room in the listen backlog
    return sock


@contextlib.contextmanager
def crowd(count: int, connect: Connect) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(connect())
        yield socks
    finally:
        for sock in socks:
            sock.close()


class Connect:
    def __init__(self, unix: Path | None = None, tcp: tuple[str, int] | None = None) -> None:
        self.unix, self.tcp = unix, tcp

    def __call__(self) -> socket.socket:
        if self.unix is not None:
            return unix_socket(self.unix)
        assert self.tcp is not None
        return socket.create_connection(self.tcp, timeout=10)


def pump(socks: list[socket.socket], payload: bytes, quiet: float = 1.0) -> int:
    """Send `payload` on every socket at once until all is sent or the daemon has taken
    nothing for `quiet` seconds (it stopped reading them, or closed them); returns the
    number of bytes it took."""
    selector = selectors.DefaultSelector()
    offsets: dict[socket.socket, int] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_WRITE, sock)
        offsets[sock] = 0
    taken = 0
    last_progress = time.monotonic()
    while offsets and time.monotonic() - last_progress < quiet:
        for key, _ in selector.select(timeout=0.1):
            sock = key.data
            offset = offsets[sock]
            try:
                sent = sock.send(payload[offset : offset + READ_CHUNK])
            except OSError:
                sent = -1
            if sent > 0:
                offsets[sock] = offset + sent
                taken += sent
                last_progress = time.monotonic()
            if sent < 0 or offsets[sock] >= len(payload):
                selector.unregister(sock)
                del offsets[sock]
    selector.close()
    return taken


class Closings:
    """Watches sockets for the daemon to close them, keeping what each received meanwhile
    (an Error may arrive one poll before the close does)."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.errors: list[Error] = []
        self._received = {sock: b"" for sock in socks}
        for sock in socks:
            sock.setblocking(False)

    def all_closed(self) -> bool:
        return all([self._closed(sock) for sock in list(self._received)])

    def _closed(self, sock: socket.socket) -> bool:
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                # The daemon closed with our bytes unread, so its side sent a reset; what
                # it wrote before that was received all the same.
                chunk = b""
            if chunk:
                self._received[sock] += chunk
                continue
            self._take_errors(self._received.pop(sock))
            return True

    def _take_errors(self, received: bytes) -> None:
        while len(received) >= 4:
            end = 4 + int.from_bytes(received[:4], "big")
            if len(received) < end:
                return
            reply = decode_reply(received[4:end])
            if isinstance(reply, Error):
                self.errors.append(reply)
            received = received[end:]


def idle_closed(client: Client) -> bool:
    connection = client._connection
    return connection is not None and connection.hung_up()


def served(client: Client) -> None:
    """A normal client still gets a job done."""
    job_id = client.submit([make_spec("Echo", "handle", ["still here"])]).ids[0]
    assert client.wait(job_id, timeout=30).state is JobState.SUCCEEDED


# The tests ------------------------------------------------------------------------------


def test_frame_reader_caps_frames_before_the_handshake() -> None:
    reader = FrameReader(PREAUTH_MAX_FRAME_BYTES)
    assert reader.feed(hello_frame()) != []
    reader.push(struct.pack(">I", PREAUTH_MAX_FRAME_BYTES + 1))
    assert reader.wanted == 0  # too large to ask the budget for: refused instead
    with pytest.raises(FrameError) as refused:
        reader.pop()
    assert refused.value.code is ErrorCode.FRAME_TOO_LARGE


def test_frame_reader_hands_out_a_large_frame_sent_in_pieces() -> None:
    reader = FrameReader(MAX_FRAME_BYTES)
    body = bytes(range(256)) * (MIB // 256)
    frame = struct.pack(">I", len(body)) + body + struct.pack(">I", 2) + b"ok"
    reader.push(frame[:1000])
    assert reader.wanted == len(body) > SMALL_FRAME_BYTES
    assert reader.pop() is None  # its buffer is made; the rest has not arrived
    assert reader.wanted == 0
    reader.push(frame[1000:])
    assert reader.pop() == body
    assert reader.pop() == b"ok"
    assert reader.pending == 0
    reader.push(frame[:5000])
    reader.pop()
    reader.close()
    assert reader.pending == 0


def test_connections_that_send_half_a_frame_and_close_leave_nothing_behind(
    workspace: Workspace,
) -> None:
    """The finding: 100 connections x (Hello + half of a 4 MiB frame + close), four times,
    took the daemon from 31 MB to 1.07 GB. Now the peak stays within the 64 MiB budget
    plus a read per connection, and each round's memory is back at once."""
    daemon = workspace.start_daemon()
    client = workspace.client()
    served(client)
    baseline = rss(daemon.pid)
    reset_peak(daemon.pid)
    connect = Connect(unix=workspace.socket_path)
    for _round in range(4):
        with crowd(100, connect) as socks:
            pump(socks, hello_frame() + HALF_FRAME)
        wait_for(
            lambda: rss(daemon.pid) < baseline + 16 * MIB,
            timeout=20,
            what="the daemon to give the round's memory back",
        )
        served(client)
    assert peak_rss(daemon.pid) - baseline < 64 * MIB + 100 * READ_CHUNK + 24 * MIB


def test_half_frames_after_hello_fit_the_budget_and_are_closed_when_they_stall(
    workspace: Workspace,
) -> None:
    workspace.write_config({"daemon": {"buffer_budget": "16MiB", "stall_timeout": 2}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    baseline = rss(daemon.pid)
    reset_peak(daemon.pid)
    with crowd(150, Connect(unix=workspace.socket_path)) as socks:
        taken = pump(socks, hello_frame() + HALF_FRAME)
        assert taken < 150 * len(HALF_FRAME) // 2  # most of them were not read at all
        served(client)  # small requests do not wait for the budget
        closings = Closings(socks)
        wait_for(closings.all_closed, timeout=60, what="stalled frames closed")
        errors = closings.errors
    assert peak_rss(daemon.pid) - baseline < 16 * MIB + 150 * READ_CHUNK + 24 * MIB
    assert errors and all(
        e.code in (ErrorCode.BAD_REQUEST, ErrorCode.FRAME_TOO_LARGE) for e in errors
    )
    assert any("nothing received" in e.message for e in errors)
    wait_for(lambda: rss(daemon.pid) < baseline + 16 * MIB, timeout=60, what="memory back")
    served(client)


def test_a_large_frame_waits_for_room_and_then_is_read(workspace: Workspace) -> None:
    """With the budget full of stalled frames, a whole large submit is read once they are
    closed (before its own stall timeout runs out, since it waited from the start)."""
    workspace.write_config({"daemon": {"buffer_budget": "4MiB", "stall_timeout": 3}})
    workspace.start_daemon()
    client = workspace.client()
    with crowd(1, Connect(unix=workspace.socket_path)) as hogs:
        pump(hogs, hello_frame() + HALF_FRAME)  # takes the whole budget, then stalls
        big = "y" * (SMALL_FRAME_BYTES * 2)
        job_id = client.submit([make_spec("Echo", "handle", [big])]).ids[0]
        assert client.wait(job_id, timeout=30).result == [big]


def test_idle_connections_are_closed_but_not_subscribers(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"idle_timeout": 1}})
    workspace.start_daemon()
    client = workspace.client()
    client.ping()
    address = Address(unix_path=workspace.socket_path)
    with (
        Client(address, timeout=30).events() as events,
        crowd(150, Connect(unix=workspace.socket_path)) as socks,
    ):
        for sock in socks:
            sock.sendall(hello_frame())
        closings = Closings(socks)
        wait_for(closings.all_closed, timeout=60, what="idle connections closed")
        errors = closings.errors
        assert errors == []  # an idle close says nothing a client could mistake for a reply
        wait_for(lambda: idle_closed(client), timeout=30, what="the client's connection closed")
        served(client)  # it reconnects by itself
        assert next(iter(events)).job_id > 0  # the subscriber was kept


def test_the_async_client_survives_an_idle_close(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"idle_timeout": 1}})
    workspace.start_daemon()

    async def scenario() -> None:
        client = AsyncClient(Address(unix_path=workspace.socket_path))
        try:
            first = await client.submit([make_spec("Echo", "handle", ["a"])])
            deadline = time.monotonic() + 30
            while client._connection._writer is not None:
                assert time.monotonic() < deadline, "the daemon never closed the idle client"
                await asyncio.sleep(0.05)
            second = await client.submit([make_spec("Echo", "handle", ["b"])])
            assert second.ids[0] > first.ids[0]
        finally:
            await client.close()

    asyncio.run(scenario())


def test_the_async_client_notices_a_close_that_came_while_its_loop_was_not_running(
    workspace: Workspace,
) -> None:
    """An application that runs its loop now and then (`run_until_complete`): the idle
    close arrives while nothing reads it; the next request must not be sent into it."""
    workspace.write_config({"daemon": {"idle_timeout": 1}})
    workspace.start_daemon()
    loop = asyncio.new_event_loop()
    client = AsyncClient(Address(unix_path=workspace.socket_path))
    try:
        loop.run_until_complete(client.submit([make_spec("Echo", "handle", ["a"])]))
        writer = client._connection._writer
        assert writer is not None
        with socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno())) as peek:
            peek.setblocking(False)

            def closed() -> bool:
                try:
                    return peek.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    return False

            wait_for(closed, timeout=30, what="the idle close")
        submitted = loop.run_until_complete(client.submit([make_spec("Echo", "handle", ["b"])]))
        assert submitted.ids
    finally:
        loop.run_until_complete(client.close())
        loop.close()


def test_tcp_frames_before_the_token_are_refused_at_once(workspace: Workspace) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workspace.write_config({"daemon": {"transport": "tcp", "listen": f"127.0.0.1:{port}"}})
    daemon = workspace.start_daemon(ready=False)
    token_path = workspace.storage / "bgjobd.token"
    client = Client(Address(host="127.0.0.1", port=port, token_path=token_path), timeout=30)

    def answers() -> bool:
        with contextlib.suppress(Exception):
            client.ping()
            return True
        return False

    wait_for(answers, timeout=20, what="the TCP daemon")
    try:
        baseline = rss(daemon.pid)
        reset_peak(daemon.pid)
        with crowd(150, Connect(tcp=("127.0.0.1", port))) as socks:
            pump(socks, HALF_FRAME)
            closings = Closings(socks)
            wait_for(closings.all_closed, timeout=30, what="pre-auth closes")
            errors = closings.errors
        # Refused for what they sent or for their number, never left to the handshake timeout.
        assert len(errors) == 150
        assert all("handshake timeout" not in e.message for e in errors)
        assert any(e.code is ErrorCode.FRAME_TOO_LARGE for e in errors)
        assert peak_rss(daemon.pid) - baseline < 150 * READ_CHUNK + 16 * MIB
        served(client)
    finally:
        client.close()


def test_a_client_that_does_not_read_its_replies_is_not_read_either(
    workspace: Workspace,
) -> None:
    """200 pipelined Gets of a ~2 MB record, never read: without backpressure the daemon
    queued them all (+65 MB when tried); it queues one, and reads the rest when that is
    taken."""
    daemon = workspace.start_daemon()
    client = workspace.client()
    big = "z" * (900 * 1024)
    job_id = client.submit([make_spec("Echo", "handle", [big])]).ids[0]
    assert client.wait(job_id, timeout=30).state is JobState.SUCCEEDED
    encoder = FrameEncoder()
    gets = b"".join(encoder.encode(Get(rid=rid, job_id=job_id)) for rid in range(1, 201))
    baseline = rss(daemon.pid)
    reset_peak(daemon.pid)
    with crowd(1, Connect(unix=workspace.socket_path)) as socks:
        socks[0].sendall(hello_frame())
        pump(socks, gets)
        served(client)
        assert peak_rss(daemon.pid) - baseline < 16 * MIB
        replies = 0
        socks[0].settimeout(30)
        reader = FrameReader()
        while replies < 201:  # the Welcome, then every Get: nothing was dropped
            chunk = socks[0].recv(READ_CHUNK)
            assert chunk, "the daemon closed the connection"
            replies += len(reader.feed(chunk))


@pytest.mark.parametrize(
    ("daemon_table", "message"),
    [
        ('buffer_budget = "1MiB"', "daemon.buffer_budget: must hold at least one whole frame"),
        ('buffer_budget = "lots"', "daemon.buffer_budget: 'lots' is not a size"),
        ("idle_timeout = 0", "daemon.idle_timeout: Expected `float` > 0"),
    ],
)
def test_connection_limits_are_checked_when_loaded(
    tmp_path: Path, daemon_table: str, message: str
) -> None:
    path = tmp_path / "bgjobs.toml"
    path.write_text(f"[daemon]\n{daemon_table}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_a_hello_is_needed_before_a_large_frame(workspace: Workspace) -> None:
    workspace.start_daemon()
    with crowd(1, Connect(unix=workspace.socket_path)) as socks:
        socks[0].sendall(struct.pack(">I", PREAUTH_MAX_FRAME_BYTES + 1))
        closings = Closings(socks)
        wait_for(closings.all_closed, timeout=20, what="the refusal")
        errors = closings.errors
    assert [e.code for e in errors] == [ErrorCode.FRAME_TOO_LARGE]
