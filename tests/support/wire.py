"""Raw protocol conversations with a daemon, for tests that send what no client would."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from bgjobs.protocol import (
    PROTOCOL_VERSION,
    FrameEncoder,
    FrameError,
    FrameReader,
    Hello,
    Reply,
    Welcome,
    decode_reply,
)


class RawConnection:
    """A socket to the daemon that sends bytes as given and reads replies as framed."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self._reader = FrameReader()
        self._ready: list[bytes] = []
        self.encoder = FrameEncoder()

    def hello(self) -> None:
        self.sock.sendall(self.encoder.encode(Hello(version=PROTOCOL_VERSION, client="test")))
        welcome = self.reply()
        assert isinstance(welcome, Welcome), welcome

    def send(self, data: bytes) -> None:
        """Send bytes; a daemon that already closed the connection is not an error here."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def reply(self) -> Reply | None:
        """The next reply, or None once the daemon has closed the connection. A frame that
        is not a well-formed reply fails the test."""
        while not self._ready:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                assert self._reader.pending == 0, "the daemon closed mid-frame"
                return None
            try:
                self._ready.extend(self._reader.feed(chunk))
            except FrameError as exc:
                raise AssertionError(f"the daemon sent a bad frame: {exc}") from None
        return decode_reply(self._ready.pop(0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
