"""Job classes of the benchmark, shared by every system measured.

bgjobs' workers import this package under the name `benchjobs` (a symlink in the
benchmark's temporary directory, named by `jobs_package`), so it imports nothing of its own
by relative path; Huey's tasks call the same classes, so every system runs the same bodies.
"""

from __future__ import annotations

import os
import socket
import time

_CONNECTIONS: dict[int, socket.socket] = {}


def redis_incr(key: str) -> int:
    """One Redis INCR on this process's own connection (a forked worker opens its own).

    Spoken in RESP by hand on purpose: redis-py would add ~16 MiB to every worker that ran
    one job, and W5's memory after the workloads should show the job runner, not the probe.
    """
    connection = _CONNECTIONS.get(os.getpid())
    if connection is None:
        connection = socket.create_connection(
            (
                os.environ.get("BENCH_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("BENCH_REDIS_PORT", "6379")),
            )
        )
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _CONNECTIONS[os.getpid()] = connection
    name = key.encode()
    connection.sendall(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(name), name))
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = connection.recv(64)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        reply += chunk
    if not reply.startswith(b":"):
        raise RuntimeError(f"Redis answered INCR with {reply!r}")
    return int(reply[1:-2])


class Noop:
    """W1 (bgjobs, 10,000 jobs): does nothing; the daemon's own stats count them."""

    def handle(self) -> None:
        return None


class Say:
    """The retention soak's mixed load: prints a line (the store keeps its output's tail)
    for a customer (its `limit_by` key, so that its start is counted)."""

    def handle(self, customer: int | str) -> None:
        print(f"customer {customer}: done")


class Incr:
    """W1 (peer variant): one Redis INCR, the peers' completion signal."""

    def handle(self, key: str) -> None:
        redis_incr(key)


class Late:
    """W3: appends how late it started (seconds, negative = early) to a file."""

    def handle(self, path: str, due: float | str) -> None:
        lateness = time.time() - float(due)  # first thing: nothing before it adds lateness
        # One short O_APPEND write per job: lines from concurrent workers do not interleave.
        with open(path, "a", encoding="ascii") as handle:
            handle.write(f"{lateness:.6f}\n")


class SleepIncr:
    """W4: sleeps, then INCRs a Redis key so the client sees the job end."""

    def handle(self, seconds: float | str, key: str) -> None:
        time.sleep(float(seconds))
        redis_incr(key)
