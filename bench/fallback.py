"""The fallback's cost: several processes call `run_background_job()` with the daemon down.

    python bench/fallback.py [--checkout DIR] [--processes 4] [--calls 50] [--rate 0] [--daemon-up]
    python bench/fallback.py --restart-with 5000

Measures, for the code in `--checkout` (default: this one): each call's latency (p50,
p99, max), the most fallback runner processes alive at once, then the time a daemon
started right after the burst takes to answer a ping, the time until every job has run,
and how many ran twice or not at all. Everything runs in a temporary directory; every
process started carries a marker and is killed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

MARKER_ENV = "BGJOBS_BENCH_MARKER"
JOBS = """
import os


class Mark:
    def handle(self, path, token):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (token + "\\n").encode())
        finally:
            os.close(fd)
        return token
"""


def child(out: str, calls: int, go: str, prefix: str, tokens: str, rate: float) -> None:  # noqa: PLR0917
    """One application process: waits for the go file, then `calls` submits (`rate` per
    second at most, as a request handler that does other work; 0: back to back)."""
    from bgjobctl.library import run_background_job

    while not os.path.exists(go):
        time.sleep(0.005)
    timings = []
    begin = time.monotonic()
    for n in range(calls):
        if rate:
            time.sleep(max(0.0, begin + n / rate - time.monotonic()))
        started = time.perf_counter_ns()
        run_background_job("Mark", "handle", [tokens, f"{prefix}-{n}"])
        timings.append(time.perf_counter_ns() - started)
    Path(out).write_text(json.dumps(timings))


def runners(marker: str) -> list[int]:
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and (
            b"bgjobd.oneshot" in cmdline or b"bgjobd.drain" in cmdline
        ):
            found.append(int(entry))
    return found


def kill_marked(marker: str) -> None:
    needle = f"{MARKER_ENV}={marker}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ping(socket_path: Path) -> bool:
    from bgjobctl.address import Address
    from bgjobctl.client import Client
    from bgjobs.errors import BgjobsError

    try:
        with Client(Address(unix_path=socket_path), timeout=1) as client:
            client.ping()
    except (BgjobsError, OSError):
        return False
    return True


def prepare(
    root: Path, socket_dir: Path, marker: str, checkout: Path
) -> tuple[Path, dict[str, str]]:
    """The jobs package, the configuration and the environment of a run."""
    (root / "benchjobs").mkdir()
    (root / "benchjobs" / "__init__.py").write_text(JOBS)
    config = root / "bgjobs.toml"
    config.write_text(
        f'jobs_package = "benchjobs"\nmax_execution_time = 60\n'
        f'[allowed_jobs]\nMark = ["handle"]\n'
        f'[daemon]\nsocket = "{socket_dir}/d.sock"\nstorage = "{root}/storage"\nworkers = 2\n'
    )
    env = {
        **os.environ,
        MARKER_ENV: marker,
        "BGJOBS_CONFIG": str(config),
        "PYTHONPATH": os.pathsep.join([str(checkout), str(root)]),
    }
    return config, env


def answered_after(socket_path: Path, started: float) -> float:
    while not ping(socket_path):
        if time.monotonic() - started > 120:
            raise SystemExit("the daemon did not answer within 120 s")
        time.sleep(0.01)
    return time.monotonic() - started


def all_ran_after(tokens: Path, total: int, started: float) -> float:
    while True:
        ran = tokens.read_text().split() if tokens.exists() else []
        if len(set(ran)) >= total or time.monotonic() - started > 300:
            return time.monotonic() - started
        time.sleep(0.05)


def start_daemon(config: Path, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bgjobd", "--config", str(config)],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def measure(
    checkout: Path, processes: int, calls: int, rate: float, *, daemon_up: bool = False
) -> dict[str, Any]:
    marker = uuid.uuid4().hex
    root = Path(tempfile.mkdtemp(prefix="bgjobs-fallback-"))
    socket_dir = Path(tempfile.mkdtemp(prefix="bgf-", dir="/tmp"))
    config, env = prepare(root, socket_dir, marker, checkout)
    tokens = root / "tokens"
    go = root / "go"
    children = []
    for n in range(processes):
        command = [sys.executable, __file__, "--child", str(root / f"t{n}.json")]
        command += ["--calls", str(calls), "--go", str(go), "--prefix", f"p{n}"]
        command += ["--tokens", str(tokens), "--rate", str(rate)]
        children.append(subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL))
    daemon: subprocess.Popen[bytes] | None = None
    first_answer = None
    try:
        if daemon_up:  # the reference: the same calls answered by a daemon
            daemon = start_daemon(config, root, env)
            first_answer = answered_after(socket_dir / "d.sock", time.monotonic())
        time.sleep(1.0)  # the children import the library
        go.touch()
        most = 0
        while any(process.poll() is None for process in children):
            most = max(most, len(runners(marker)))
            time.sleep(0.02)
        per_process = [json.loads((root / f"t{n}.json").read_text()) for n in range(processes)]
        timings = [t / 1e6 for series in per_process for t in series]
        # A process's first call also loads the configuration and opens the client: the
        # same with the daemon up. The later ones are what a fallback itself costs.
        later = [t / 1e6 for series in per_process for t in series[1:]]
        most = max(most, len(runners(marker)))
        started = time.monotonic()
        if daemon is None:
            daemon = start_daemon(config, root, env)
        answered = first_answer or answered_after(socket_dir / "d.sock", started)
        total = processes * calls
        all_ran = all_ran_after(tokens, total, started)
        time.sleep(1.0)  # anything that would run twice has its chance
        ran = tokens.read_text().split() if tokens.exists() else []
        return {
            "checkout": str(checkout),
            "daemon_up": daemon_up,
            "processes": processes,
            "rate_per_process": rate,
            "calls": total,
            "p50_ms": round(percentile(timings, 0.5), 3),
            "p99_ms": round(percentile(timings, 0.99), 3),
            "max_ms": round(max(timings), 3),
            "p50_after_first_ms": round(percentile(later, 0.5), 3),
            "p99_after_first_ms": round(percentile(later, 0.99), 3),
            "slowest_ms": [round(t, 1) for t in sorted(timings)[-12:]],
            "first_calls_ms": [round(timings[n * calls], 1) for n in range(processes)],
            "most_runners_at_once": most,
            "daemon_answers_after_s": round(answered, 3),
            "all_ran_after_daemon_start_s": round(all_ran, 3),
            "ran": len(set(ran)),
            "ran_twice": len(ran) - len(set(ran)),
            "never_ran": total - len(set(ran)),
        }
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(30)
        for process in children:
            if process.poll() is None:
                process.kill()
        kill_marked(marker)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def restart_with(spooled: int) -> dict[str, Any]:
    """A daemon started with `spooled` jobs waiting in the spool (this checkout only): how
    soon it answers, and how soon they have all run."""
    from bgjobctl.library import make_spec
    from bgjobd import spool

    marker = uuid.uuid4().hex
    root = Path(tempfile.mkdtemp(prefix="bgjobs-fallback-"))
    socket_dir = Path(tempfile.mkdtemp(prefix="bgf-", dir="/tmp"))
    config, env = prepare(root, socket_dir, marker, Path(__file__).resolve().parents[1])
    modes = spool.Modes(0o700, 0o600)
    directory = spool.prepare(root / "storage", modes)
    tokens = root / "tokens"
    now = time.time()
    for n in range(spooled):
        spec = make_spec("Mark", "handle", [str(tokens), f"s{n}"])
        spool.write(directory, spec, now, modes, fsync=False)
    started = time.monotonic()
    daemon = start_daemon(config, root, env)
    try:
        answered = answered_after(socket_dir / "d.sock", started)
        all_ran = all_ran_after(tokens, spooled, started)
        ran = tokens.read_text().split() if tokens.exists() else []
        return {
            "spooled": spooled,
            "daemon_answers_after_s": round(answered, 3),
            "all_ran_after_s": round(all_ran, 3),
            "ran": len(set(ran)),
            "ran_twice": len(ran) - len(set(ran)),
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(30)
        kill_marked(marker)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkout", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--calls", type=int, default=50, help="per process")
    parser.add_argument("--rate", type=float, default=0.0, help="calls/s per process; 0: no pause")
    parser.add_argument("--daemon-up", action="store_true", help="reference: no fallback")
    parser.add_argument("--restart-with", type=int, help="N jobs spooled, then a daemon start")
    parser.add_argument("--child")
    parser.add_argument("--go")
    parser.add_argument("--prefix")
    parser.add_argument("--tokens")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls, args.go, args.prefix, args.tokens, args.rate)
        return
    sys.path.insert(0, str(Path(args.checkout).resolve()))
    if args.restart_with:
        print(json.dumps(restart_with(args.restart_with), indent=2))
        return
    result = measure(
        Path(args.checkout).resolve(),
        args.processes,
        args.calls,
        args.rate,
        daemon_up=args.daemon_up,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
