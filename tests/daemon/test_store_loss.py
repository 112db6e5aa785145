"""A store that cannot vanish silently: deleted under a running daemon, it stops
acknowledging and exits non-zero; a removed lock directory is made again; a corrupted
database is refused at start."""

from __future__ import annotations

import shutil
from pathlib import Path

from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

ECHO = JobSpec(class_name="Echo", method="handle", params=["x"])


def test_deleted_database_stops_the_daemon(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    first = client.submit([ECHO]).ids[0]
    assert client.wait(first, 10).state is JobState.SUCCEEDED
    for path in workspace.storage.glob("bgjobs.db*"):
        path.unlink()

    acknowledged, refusals = daemon.submits_until_exit(ECHO, timeout=15)
    assert acknowledged == 0
    assert refusals <= {"store_unavailable", "unreachable"}, refusals
    assert daemon.process.returncode != 0
    assert "STORE LOST" in daemon.stderr and "was deleted" in daemon.stderr

    # A restart (systemd's Restart=on-failure) does not quietly begin on an empty store.
    refused = workspace.start_daemon(ready=False)
    assert refused.process.wait(30) != 0
    assert "the store was lost" in refused.stderr and "bgjobd.store-lost" in refused.stderr
    (workspace.storage / "bgjobd.store-lost").unlink()
    workspace.start_daemon()


def test_deleted_storage_stops_the_daemon(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": {"Sleep": ["handle"]}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    client.submit([JobSpec(class_name="Sleep", method="handle", params=[30])])
    wait_for(lambda: client.stats().counts["running"] == 1, what="the attempt to start")
    # The daemon may write into it meanwhile: what is left is no longer its store either.
    shutil.rmtree(workspace.storage, ignore_errors=True)

    acknowledged, _ = daemon.submits_until_exit(ECHO, timeout=15)
    assert acknowledged == 0
    assert daemon.process.returncode != 0
    assert "STORE LOST" in daemon.stderr
    # The running attempt was stopped with the daemon, not left behind.


def test_removed_lock_directory_is_made_again(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    assert client.wait(client.submit([ECHO]).ids[0], 10).state is JobState.SUCCEEDED
    workers = {worker.pid for worker in client.stats().workers}
    locks = workspace.storage / "jobs"
    shutil.rmtree(locks)

    ids = client.submit([JobSpec(class_name="Echo", method="handle", params=[i]) for i in range(5)])
    for job_id in ids.ids:
        job = client.wait(job_id, 15)
        assert job.state is JobState.SUCCEEDED, job
        assert job.attempts == 1, job
    assert {worker.pid for worker in client.stats().workers} == workers, "no worker crashed"
    wait_for(locks.is_dir, timeout=10, what="the lock directory to be made again")
    wait_for(lambda: "was removed" in workspace.error_log(), timeout=10, what="a warning")


def _corrupt(database: Path) -> None:
    """Overwrite pages 2 and 3 (the jobs table's) with garbage, keeping the header."""
    with database.open("r+b") as file:
        file.seek(4096)
        file.write(b"\xa5" * 8192)


def test_corrupted_database_is_refused_at_start(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    specs = [JobSpec(class_name="Echo", method="handle", params=["p" * 500]) for _ in range(100)]
    last = client.submit(specs).ids[-1]
    assert client.wait(last, 30).state is JobState.SUCCEEDED
    client.close()
    assert daemon.stop() == 0
    database = workspace.storage / "bgjobs.db"
    assert database.stat().st_size > 4 * 4096
    _corrupt(database)

    refused = workspace.start_daemon(ready=False)
    assert refused.process.wait(30) != 0
    assert "integrity check" in refused.stderr or "cannot be opened" in refused.stderr
    assert "restore" in refused.stderr  # it says what to do
