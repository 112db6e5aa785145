"""What a durable submit cannot beat on this machine: `python bench/floors.py`.

A submit through `run_background_job()` is one loopback round trip between two Python
processes, one SQLite transaction that stores the job (the acknowledgement waits for its
commit) and the client library's own work. This measures each of the three alone, on the
real parts, and then the whole submit against a real daemon (nothing consuming: jobs due in
an hour), so that the daemon's own overhead is what is left:

- round trip: a uvloop server echoing 4-byte-framed 64-byte messages over a Unix socket to
  a blocking client, the daemon's and the library's transports with nothing else;
- store: `SQLiteStore.add` + `commit` of one job, the daemon's own schema and pragmas with
  background checkpoints, paced one per 200 µs as submits arrive (a tight loop keeps every
  cache warm and is faster than anything a daemon sees);
- client CPU: user + system time of this process per `run_background_job()` call;
- whole submit: `run_background_job()` latency, and the daemon's CPU per submit.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import procs  # noqa: E402
from bench.bgjobs_target import Daemon, Workspace  # noqa: E402
from bench.workloads import Latency  # noqa: E402

PACE_SECONDS: Final = 0.0002


def _cpu(pid: int) -> float:
    return sum(procs.cpu_seconds(pid))


def _echo_server(path: str) -> None:
    import uvloop

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(Echo, path)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(serve())


def round_trip(count: int) -> Latency:
    with tempfile.TemporaryDirectory(prefix="bgb-floor-", dir="/tmp") as directory:
        path = f"{directory}/echo.sock"
        server = subprocess.Popen(
            [sys.executable, __file__, "--echo-server", path],
            stdout=subprocess.PIPE,
            env=procs.child_env(None),
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()
            client = socket.socket(socket.AF_UNIX)
            client.connect(path)
            message = struct.pack(">I", 60) + b"x" * 60
            samples = []
            for _ in range(count):
                started = time.perf_counter_ns()
                client.sendall(message)
                received = 0
                while received < len(message):
                    received += len(client.recv(65536))
                samples.append(time.perf_counter_ns() - started)
            client.close()
        finally:
            procs.stop_process(server, timeout=5)
    return Latency.of(samples)


def store_commit(count: int) -> Latency:
    from bgjobd import submission
    from bgjobd.store.sqlite import SQLiteStore
    from bgjobs.config import load_config
    from bgjobs.model import JobSpec

    workspace = Workspace("floor")
    try:
        config = load_config(workspace.config)
        store = SQLiteStore(config.database_path, background_checkpoints=True)
        spec = JobSpec(class_name="Noop", method="handle", params=[], delay=3600)
        samples = []
        for _ in range(count):
            rows = submission.build(config, spec, time.time(), "bgjobd@floor")
            started = time.perf_counter_ns()
            store.add(rows)
            store.commit()
            samples.append(time.perf_counter_ns() - started)
            time.sleep(PACE_SECONDS)
        store.close()
    finally:
        workspace.remove()
    return Latency.of(samples)


def whole_submit(count: int) -> tuple[Latency, float, float]:
    """run_background_job() latency against a real daemon; client and daemon CPU µs/call."""
    from bgjobctl.library import close_clients, run_background_job

    workspace = Workspace("floor")
    daemon = Daemon(workspace)
    try:
        daemon.wait_ready()
        config = str(workspace.config)

        def submit() -> None:
            run_background_job("Noop", "handle", [], 3600, config=config, fallback="error")

        for _ in range(200):
            submit()
        own = resource.getrusage(resource.RUSAGE_SELF)
        daemon_before = _cpu(daemon.pid)
        samples = []
        for _ in range(count):
            started = time.perf_counter_ns()
            submit()
            samples.append(time.perf_counter_ns() - started)
        after = resource.getrusage(resource.RUSAGE_SELF)
        daemon_cpu = (_cpu(daemon.pid) - daemon_before) / count * 1e6
        client_cpu = (
            ((after.ru_utime - own.ru_utime) + (after.ru_stime - own.ru_stime)) / count * 1e6
        )
        close_clients()
    finally:
        daemon.stop()
        workspace.remove()
    return Latency.of(samples), client_cpu, daemon_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--echo-server", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        _echo_server(args.echo_server)
        return 0
    trip = round_trip(args.count)
    store = store_commit(args.count)
    submit, client_cpu, daemon_cpu = whole_submit(args.count)
    floor = trip.p50_us + store.p50_us + client_cpu
    rows = [
        ("loopback round trip (uvloop echo)", f"p50 {trip.p50_us:,.0f}, p99 {trip.p99_us:,.0f}"),
        ("store: add + commit of one job", f"p50 {store.p50_us:,.0f}, p99 {store.p99_us:,.0f}"),
        ("client library CPU per call", f"{client_cpu:,.0f}"),
        ("floor of a durable submit (the three)", f"{floor:,.0f}"),
        (
            "run_background_job(), nothing consuming",
            f"p50 {submit.p50_us:,.0f}, p99 {submit.p99_us:,.0f}",
        ),
        ("daemon CPU per submit", f"{daemon_cpu:,.0f}"),
        ("the whole submit over the floor, p50", f"{submit.p50_us - floor:,.0f}"),
    ]
    for label, figure in rows:
        print(f"  {label:42} {figure} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
