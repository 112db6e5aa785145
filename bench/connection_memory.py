"""How much memory a crowd of misbehaving connections makes the daemon hold (issue 9,
finding 7), measured as the daemon's resident set (VmRSS) from /proc.

    .venv/bin/python bench/connection_memory.py                    # this checkout
    .venv/bin/python bench/connection_memory.py --repo /tmp/base   # another revision's code

Three attacks, each against a fresh daemon with the default settings:
- churn: 100 connections each send a Hello and half of a 4 MiB frame, then close; 4 rounds.
- held: 150 connections each send a Hello and half of a 4 MiB frame, and stay open.
- tcp: on the TCP transport, 150 connections each send half of a 4 MiB frame before any
  Hello (so before the token is checked), and stay open.
Each attack ends by asking the daemon for a Ping on a fresh connection.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgjobs.protocol import (  # noqa: E402  # after the path is set up
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameEncoder,
    Hello,
    Ping,
)

HALF_FRAME = struct.pack(">I", MAX_FRAME_BYTES) + b"x" * (MAX_FRAME_BYTES // 2)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The resident set now, or its peak (`VmHWM`) since `reset_peak`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Daemon:
    def __init__(self, repo: Path, root: Path, transport: str) -> None:
        self.root = root
        self.socket_path = root / "d.sock"
        port = _free_port()
        self.tcp = ("127.0.0.1", port)
        config = root / "bgjobs.toml"
        config.write_text(
            f'jobs_package = "jobs"\n[daemon]\nsocket = "{self.socket_path}"\n'
            f'storage = "{root / "storage"}"\nworkers = 1\ntransport = "{transport}"\n'
            f'listen = "127.0.0.1:{port}"\n[dashboard]\nenabled = false\n'
        )
        env = {**os.environ, "PYTHONPATH": str(repo)}
        env.pop("BGJOBS_CONFIG", None)
        env.pop("BGJOBS_SOCKET", None)
        self.transport = transport
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bgjobd", "--config", str(config)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.1)

    @property
    def token(self) -> str | None:
        path = self.root / "storage" / "bgjobd.token"
        return path.read_text().strip() if self.transport == "tcp" else None

    def connect(self) -> socket.socket:
        if self.transport == "tcp":
            return socket.create_connection(self.tcp, timeout=10)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.socket_path))  # blocking: waits for room in the backlog
        sock.settimeout(10)
        return sock

    def hello(self) -> bytes:
        return FrameEncoder().encode(Hello(version=PROTOCOL_VERSION, token=self.token))

    def answers(self) -> bool:
        """A Hello and a Ping on a fresh connection get two replies."""
        try:
            with self.connect() as sock:
                encoder = FrameEncoder()
                sock.sendall(self.hello() + encoder.encode(Ping(rid=1)))
                received = b""
                frames = 0
                while frames < 2:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return False
                    received += chunk
                    while len(received) >= 4:
                        length = int.from_bytes(received[:4], "big")
                        if len(received) < 4 + length:
                            break
                        received = received[4 + length :]
                        frames += 1
                return True
        except OSError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pump(socks: list[socket.socket], payload: bytes, quiet: float = 2.0) -> int:
    """Send `payload` on every socket at once, until all is sent or the daemon has taken
    nothing more for `quiet` seconds (it paused or closed them); returns bytes sent."""
    selector = selectors.DefaultSelector()
    offsets = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_WRITE)
        offsets[sock] = 0
    sent_total = 0
    last_progress = time.monotonic()
    while offsets and time.monotonic() - last_progress < quiet:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                sent = sock.send(payload[offsets[sock] : offsets[sock] + 262144])
            except OSError:
                sent = -1
            if sent > 0:
                offsets[sock] += sent
                sent_total += sent
                last_progress = time.monotonic()
            if sent < 0 or offsets[sock] >= len(payload):
                selector.unregister(sock)
                del offsets[sock]
    selector.close()
    return sent_total


def settled_rss(pid: int, seconds: float = 1.0) -> float:
    """The daemon's RSS once it has had a moment to read what it was sent."""
    time.sleep(seconds)  # a measurement, not a test: give the daemon time to catch up
    return rss_mib(pid)


def churn(daemon: Daemon) -> str:
    before = rss_mib(daemon.process.pid)
    reset_peak(daemon.process.pid)
    after_rounds = []
    for _round in range(4):
        socks = [daemon.connect() for _ in range(100)]
        pump(socks, daemon.hello() + HALF_FRAME)
        for sock in socks:
            sock.close()
        after_rounds.append(settled_rss(daemon.process.pid))
    rounds = " -> ".join(f"{r:.0f}" for r in after_rounds)
    peak = rss_mib(daemon.process.pid, "VmHWM")
    return f"churn: RSS {before:.0f} MiB, after each round {rounds} MiB (peak {peak:.0f} MiB)"


def held(daemon: Daemon, hello: bool) -> str:
    before = rss_mib(daemon.process.pid)
    reset_peak(daemon.process.pid)
    socks = [daemon.connect() for _ in range(150)]
    try:
        sent = pump(socks, (daemon.hello() if hello else b"") + HALF_FRAME)
        during = settled_rss(daemon.process.pid)
        peak = rss_mib(daemon.process.pid, "VmHWM")
    finally:
        for sock in socks:
            sock.close()
    return (
        f"{'held' if hello else 'tcp pre-auth'}: RSS {before:.0f} MiB -> {during:.0f} MiB "
        f"(peak {peak:.0f} MiB) with 150 connections open ({sent / 2**20:.0f} MiB accepted)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="whose bgjobd to run")
    parser.add_argument("--attack", choices=["all", "churn", "held", "tcp"], default="all")
    args = parser.parse_args()
    attacks = ["churn", "held", "tcp"] if args.attack == "all" else [args.attack]
    print(f"bgjobd from {args.repo.resolve()}")
    for attack in attacks:
        with tempfile.TemporaryDirectory(prefix="bgb-conn-", dir="/tmp") as root:
            daemon = Daemon(args.repo, Path(root), "tcp" if attack == "tcp" else "unix")
            try:
                hello = attack == "held"
                line = churn(daemon) if attack == "churn" else held(daemon, hello=hello)
                answers = daemon.answers()
                print(f"{line}; still answers: {'yes' if answers else 'NO'}", flush=True)
            finally:
                daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
