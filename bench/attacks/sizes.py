"""Before/after figures for the `sizes` topic (issue 9, findings 2, 4 and the output of 5).

    .venv/bin/python bench/attacks/sizes.py REPO [loop|records|output|old]

REPO is a checkout (the original: a worktree at a3e002d; the change: this checkout). The
script makes a scratch directory with its own jobs package and configuration, starts that
checkout's `bgjobd`, and prints what it measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(sys.argv[1]).resolve()
WHAT = sys.argv[2]
sys.path.insert(0, str(REPO))

from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobs.model import JobSpec

JOBS = """
import subprocess

class Echo:
    def handle(self, *args):
        return list(args)

class BigResult:
    def handle(self, size):
        return "r" * int(size)

class Flood:
    def handle(self, size):
        subprocess.run(["sh", "-c", f"yes 0123456789abcdef | head -c {int(size)}"], check=True)
        return "flooded"
"""

root = Path(tempfile.mkdtemp(prefix="sizes-measure-"))
sock = Path(tempfile.mkdtemp(prefix="bgjm-", dir="/tmp")) / "d.sock"
(root / "mjobs").mkdir()
(root / "mjobs" / "__init__.py").write_text(JOBS)
(root / "bgjobs.toml").write_text(
    f"""jobs_package = "mjobs"
retry_attempts = 0
max_execution_time = 60
[allowed_jobs]
Echo = ["handle"]
BigResult = ["handle"]
Flood = ["handle"]
[daemon]
workers = 2
socket = "{sock}"
[dashboard]
enabled = false
"""
)
env = {**os.environ, "PYTHONPATH": str(REPO)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bgjobctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgjobctl", "--config", str(root / "bgjobs.toml"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start() -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bgjobd", "--config", str(root / "bgjobs.toml")],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(200):
        try:
            with Client(Address(unix_path=sock), timeout=2) as probe:
                probe.ping()
            return daemon
        except Exception:  # noqa: BLE001
            time.sleep(0.05)
    raise SystemExit("daemon did not start")


def final(client: Client, job_id: int, timeout: float = 60) -> str:
    """The job's final state and error (or why its record could not be read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.stats().counts
        if sum(counts[state] for state in ("succeeded", "failed", "cancelled")) >= job_id:
            break
        time.sleep(0.1)
    try:
        job = client.get(job_id)
    except Exception as exc:  # noqa: BLE001
        listed = bgjobctl("--json", "list", "--search", str(job_id))
        state = json.loads(listed.stdout)["jobs"][0] if listed.returncode == 0 else {}
        return (
            f"{state.get('state')} {state.get('reason') or ''} {state.get('error') or ''}"
            f" (Get failed: {type(exc).__name__}: {exc})"
        )
    error = job.error.summary() if job.error else ""
    return f"{job.state.value} {job.reason or ''} {error}"


def watch_workers(client: Client, daemon_pid: int, seconds: float) -> None:
    pids: set[int] = set()
    cpu0, t0 = cpu_seconds(daemon_pid), time.monotonic()
    while time.monotonic() - t0 < seconds:
        pids.update(worker.pid for worker in client.stats().workers)
        time.sleep(0.05)
    cpu = (cpu_seconds(daemon_pid) - cpu0) / (time.monotonic() - t0)
    print(f"distinct worker pids in {seconds:.0f}s: {len(pids)} (2 at start), daemon CPU {cpu:.0%}")
    log = root / "storage" / "logs" / "background_jobs_errors.log"
    text = log.read_text() if log.exists() else ""
    print(f"attempts given back ('queued again' log lines): {text.count('queued again')}")


daemon = start() if WHAT != "old" else None
try:
    if WHAT == "loop":
        assert daemon is not None
        with Client(Address(unix_path=sock), timeout=30) as client:
            try:
                ids = client.submit(
                    [JobSpec(class_name="Echo", method="handle", params=["x" * (4 * 2**20 - 250)])]
                ).ids
                print(f"submit of ~4 MiB params acknowledged: id {ids[0]}")
                watch_workers(client, daemon.pid, 30)
                print("job state after 30 s:", client.get(ids[0]).state.value)
            except Exception as exc:  # noqa: BLE001
                print(f"submit of ~4 MiB params refused: {type(exc).__name__}: {exc}")
    elif WHAT == "old":
        # An old record: params too large for a worker message, stored directly.
        from bgjobd.store.base import NewJob
        from bgjobd.store.sqlite import SQLiteStore
        from bgjobs.model import JobState, Priority

        (root / "storage").mkdir()
        store = SQLiteStore(root / "storage" / "bgjobs.db")
        now = time.time()
        store.add(
            [
                NewJob(
                    class_name="Echo",
                    method="handle",
                    params=["x" * (4 * 2**20 - 250)],
                    priority=Priority.MEDIUM,
                    state=JobState.QUEUED,
                    run_at=now,
                    max_attempts=1,
                    timeout=60,
                    created_at=now,
                )
            ]
        )
        store.commit()
        store.close()
        daemon = start()
        started = time.monotonic()
        with Client(Address(unix_path=sock), timeout=30) as client:
            while time.monotonic() - started < 30:
                if client.stats().counts["failed"]:
                    print(f"job 1 failed {time.monotonic() - started:.2f}s after the start")
                    break
                time.sleep(0.01)
            watch_workers(client, daemon.pid, 30)
            job = client.get(1)
            print("job 1 after 30 s:", job.state.value, job.error.summary() if job.error else "")
        print("bgjobctl list exit:", bgjobctl("list").returncode)
        shown = bgjobctl("--json", "show", "1")
        print("bgjobctl show exit:", shown.returncode, shown.stderr.strip()[:120])
    elif WHAT == "records":
        with Client(Address(unix_path=sock), timeout=30) as client:
            for size in (900_000, 2_500_000):
                try:
                    spec = JobSpec(class_name="Echo", method="handle", params=["p" * size])
                    job_id = client.submit([spec]).ids[0]
                except Exception as exc:  # noqa: BLE001
                    print(f"{size} B params: submit refused: {type(exc).__name__}: {exc}")
                    continue
                print(f"{size} B params: job {job_id} {final(client, job_id)}")
                listed = bgjobctl("--json", "list")
                print(f"  bgjobctl list exit {listed.returncode} {listed.stderr.strip()[:100]}")
                if listed.returncode == 0:
                    print(f"  list reply: {len(listed.stdout)} chars of JSON")
                shown = bgjobctl("--json", "show", str(job_id))
                print(f"  bgjobctl show exit {shown.returncode} {shown.stderr.strip()[:100]}")
                if shown.returncode == 0:
                    print(f"  show params: {len(json.loads(shown.stdout)['params'][0])} chars")
            job_id = client.submit(
                [JobSpec(class_name="BigResult", method="handle", params=[5_000_000])]
            ).ids[0]
            print(f"5 MB result: {final(client, job_id)}")
    elif WHAT == "output":
        assert daemon is not None
        with Client(Address(unix_path=sock), timeout=30) as client:
            job_id = client.submit(
                [JobSpec(class_name="Flood", method="handle", params=[200 * 2**20])]
            ).ids[0]
            state = final(client, job_id)
            out = root / "storage" / "logs" / "jobs" / f"{job_id}.log"
            print(f"200 MiB printed: job {state}, output file {out.stat().st_size} bytes")
finally:
    if daemon is not None:
        daemon.terminate()
        daemon.wait(30)
