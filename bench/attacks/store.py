"""Before/after figures for the store topic. Run as root from a checkout's root:
    PYTHONPATH=. .venv/bin/python bench/attacks/store.py
(a) seconds to the reply to a submit on a full 3 MiB tmpfs (client timeout 30 s),
(b) the largest `running` count stats showed during the episode, with 2 workers,
(c) jobs acknowledged in the 8 s after `rm bgjobs.db*`, and the daemon's exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobs.errors import BgjobsError
from bgjobs.model import JobSpec
from tests.daemon.test_full_disk import fill
from tests.support.workspace import Workspace


def client(ws: Workspace, timeout: float = 30) -> Client:
    return Client(Address(unix_path=ws.socket_path), timeout=timeout)


def full_disk(min_free_space: str) -> None:
    print(f"min_free_space = {min_free_space}")
    root = Path(tempfile.mkdtemp())
    ws = Workspace(root)
    # Revisions before a3e002d do not know the key: BGJOBS_MEASURE_ORIGINAL=1 leaves it out.
    original = bool(os.environ.get("BGJOBS_MEASURE_ORIGINAL"))
    ws.write_config({} if original else {"daemon": {"min_free_space": min_free_space}})
    ws.storage.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(ws.storage)], check=True)
    try:
        daemon = ws.start_daemon()
        with client(ws) as c:
            c.submit(
                [JobSpec(class_name="Sleep", method="handle", params=[0.3]) for _ in range(30)]
            )
            filler = fill(ws.storage)
            replies = []
            most_running = 0
            for _ in range(5):
                started = time.monotonic()
                try:
                    c.submit([JobSpec(class_name="Echo", method="handle", params=["y" * 200_000])])
                    what = "acknowledged"
                except BgjobsError as exc:
                    what = type(exc).__name__
                    c.close()
                replies.append((round(time.monotonic() - started, 3), what))
                try:
                    most_running = max(most_running, c.stats().counts["running"])
                except BgjobsError:
                    c.close()
            print("(a) full disk, submit replies (s, outcome):", replies)
            # Failing submits for 10 s while the short jobs start and end: their claims and
            # outcomes share batches with the submits that cannot be stored.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    c.submit([JobSpec(class_name="Echo", method="handle", params=["y" * 200_000])])
                except BgjobsError:
                    c.close()
                try:
                    most_running = max(most_running, c.stats().counts["running"])
                except BgjobsError:
                    c.close()
            print("(b) most running in stats with 2 workers:", most_running)
            time.sleep(3)
            print("    running in stats 3 s later:", c.stats().counts["running"])
            filler.unlink()
            time.sleep(2)
            try:
                job_id = c.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
                print("    after space returned, new job:", c.wait(job_id, 20).state.value)
            except (BgjobsError, TimeoutError) as exc:
                print("    after space returned, new job:", repr(exc))
            time.sleep(5)
            print(
                "    states 5 s later (30 short jobs + 1):",
                {k: v for k, v in c.stats().counts.items() if v},
            )
        print("    SIGTERM exit code:", daemon.stop())
    finally:
        ws.close()
        subprocess.run(["umount", "-l", str(ws.storage)], check=False)


def deleted_database() -> None:
    ws = Workspace(Path(tempfile.mkdtemp()))
    try:
        daemon = ws.start_daemon()
        for path in ws.storage.glob("bgjobs.db*"):
            path.unlink()
        acknowledged = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and daemon.process.poll() is None:
            try:
                with client(ws, 5) as c:
                    for _ in range(50):
                        c.submit([JobSpec(class_name="Echo", method="handle", params=[1])])
                        acknowledged += 1
            except BgjobsError:
                pass
        print(
            "(c) acknowledged after rm bgjobs.db*:",
            acknowledged,
            "exit code:",
            daemon.process.poll(),
        )
    finally:
        ws.close()


if not os.environ.get("BGJOBS_MEASURE_ORIGINAL"):
    full_disk("1MiB")
full_disk("0")
deleted_database()
