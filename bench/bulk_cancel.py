"""How long a bulk cancel of N jobs takes, and whether the daemon keeps answering meanwhile.

    python bench/bulk_cancel.py 100000

A real daemon (the test workspace's), N Echo jobs scheduled an hour ahead, then
`bgjobctl cancel --class Echo --yes` while another thread pings the daemon in a loop."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgjobs.model import JobSpec
from tests.support.workspace import Workspace


def main(jobs: int) -> None:
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="bulk-cancel-")))
    try:
        workspace.start_daemon()
        client = workspace.client()
        for first in range(0, jobs, 1000):
            client.submit(
                [
                    JobSpec(class_name="Echo", method="handle", params=[n], delay=3600)
                    for n in range(first, min(jobs, first + 1000))
                ]
            )
        pings: list[float] = []
        done = threading.Event()

        def ping() -> None:
            pinger = workspace.client()
            while not done.is_set():
                started = time.perf_counter()
                pinger.ping()
                pings.append(time.perf_counter() - started)

        thread = threading.Thread(target=ping)
        thread.start()
        started = time.perf_counter()
        answer = workspace.bgjobctl("cancel", "--class", "Echo", "--yes", timeout=900)
        took = time.perf_counter() - started
        done.set()
        thread.join()
        print(answer.stdout.strip() or answer.stderr.strip())
        pings.sort()
        print(
            f"N={jobs}: bulk cancel took {took:.1f}s; {len(pings)} pings during it, "
            f"median {pings[len(pings) // 2] * 1000:.1f} ms, max {pings[-1] * 1000:.0f} ms"
        )
    finally:
        workspace.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
