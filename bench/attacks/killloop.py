"""Double runs across SIGKILLs: PROCS processes submit Record jobs as fast as they can
(retrying the same job, with the same idempotency key where the client has keys, while the
daemon is away); the daemon is SIGKILLed and restarted KILLS times. Counts jobs whose
"end" line appears twice (ran twice), never (lost), and errors other than unreachable.

    cd <checkout> && timeout 900 .venv/bin/python \
        bench/attacks/killloop.py [KILLS]
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.getcwd())

PROCS = 4
SECONDS_BETWEEN_KILLS = 2.0


def submitter(config: str, marker: str, out: str, prefix: str, stop: str, result: str) -> None:
    os.environ["BGJOBS_CONFIG"] = config
    os.environ["BGJOBS_TEST_MARKER"] = marker
    from bgjobctl.library import run_background_job
    from bgjobs.errors import DaemonUnreachable

    keyed = "key" in inspect.signature(run_background_job).parameters
    submitted = errors = 0
    n = 0
    while not Path(stop).exists():
        token = f"{prefix}-{n}"
        n += 1
        extra = {"key": token} if keyed else {}
        while True:
            try:
                run_background_job("Record", "handle", [out, token], fallback="error", **extra)
                submitted += 1
            except DaemonUnreachable:
                time.sleep(0.02)
                continue
            except Exception:  # noqa: BLE001
                errors += 1
            break
    Path(result).write_text(f"{submitted} {errors}")


def main() -> None:
    from tests.support.workspace import Workspace

    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    space = Workspace(Path(tempfile.mkdtemp(prefix="killloop-")))
    space.write_config({"retry_attempts": 2, "retry_delay_seconds": 0})
    out, stop = space.root / "record", space.root / "stop"
    try:
        daemon = space.start_daemon()
        ctx = multiprocessing.get_context("spawn")
        results = [space.root / f"result-{i}" for i in range(PROCS)]
        procs = [
            ctx.Process(
                target=submitter,
                args=(str(space.config_path), space.marker, str(out), f"p{i}", str(stop), str(r)),
            )
            for i, r in enumerate(results)
        ]
        for p in procs:
            p.start()
        for _ in range(kills):
            time.sleep(SECONDS_BETWEEN_KILLS)
            daemon.kill()
            daemon = space.start_daemon()
        time.sleep(SECONDS_BETWEEN_KILLS)
        stop.touch()
        for p in procs:
            p.join(120)
        submitted = errors = 0
        for r in results:
            s, e = r.read_text().split()
            submitted += int(s)
            errors += int(e)
        from bgjobctl.address import Address
        from bgjobctl.client import Client

        with Client(Address(unix_path=space.socket_path)) as client:
            deadline = time.time() + 300
            while time.time() < deadline:
                counts = client.stats().counts
                if not any(counts[s] for s in ("waiting", "scheduled", "queued", "running")):
                    break
                time.sleep(0.5)
            counts = client.stats().counts
        ends = Counter(
            line.split()[1] for line in out.read_text().splitlines() if line.startswith("end ")
        )
        doubled = sum(1 for c in ends.values() if c > 1)
        print(
            f"kills={kills} submitted={submitted} request_errors={errors} "
            f"jobs_stored={sum(counts.values())} distinct_ran={len(ends)} "
            f"ran_twice={doubled} extra_runs={sum(c - 1 for c in ends.values())} "
            f"never_ran={submitted - len(ends) if submitted >= len(ends) else 0} "
            f"failed={counts['failed']}"
        )
    finally:
        stop.touch()
        space.close()


if __name__ == "__main__":
    main()
