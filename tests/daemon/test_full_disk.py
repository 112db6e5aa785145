"""A full disk, with the storage on a 3 MiB tmpfs: submits are refused with `store_full` at
once, running jobs finish and are recorded, `stats` stays sane, and everything resumes by
itself when space returns; SIGTERM still exits 0."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobctl.client import Client
from bgjobs.errors import StoreFull
from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

DISK = "3m"


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("mounting a tmpfs needs root, and CI must run this test")
    pytest.skip("mounting a tmpfs needs root")


@pytest.fixture
def small_disk(workspace: Workspace) -> Iterator[Path]:
    """The workspace's storage on a tmpfs of its own, unmounted however the test ends."""
    _require_root()
    storage = workspace.storage
    storage.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700", "tmpfs", str(storage)], check=True
    )
    try:
        yield storage
    finally:
        for daemon in workspace.daemons:
            if daemon.process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    daemon.stop(timeout=15)
        if subprocess.run(["umount", str(storage)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(storage)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no space left; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = bytes(64 * 1024)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return filler
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


def refused_full(client: Client, spec: JobSpec) -> bool:
    try:
        client.submit([spec])
    except StoreFull:
        return True
    return False


def assert_sane(client: Client) -> None:
    stats = client.stats()
    assert stats.counts["running"] <= len(stats.workers), stats


def test_full_disk_refuses_submits_and_resumes(workspace: Workspace, small_disk: Path) -> None:
    workspace.write_config({"daemon": {"min_free_space": "1MiB"}})
    daemon = workspace.start_daemon()
    assert (small_disk / "bgjobd.reserve").exists()
    client = workspace.client()
    running = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[1.5]) for _ in range(2)]
    ).ids
    filler = fill(small_disk)

    echo = JobSpec(class_name="Echo", method="handle", params=["x" * 50_000])
    wait_for(lambda: refused_full(client, echo), timeout=10, what="a store_full refusal")
    for _ in range(20):
        assert refused_full(client, echo)  # at once: the client's timeout never runs out
    assert not (small_disk / "bgjobd.reserve").exists(), "the reserve is released"
    assert_sane(client)
    for job_id in running:
        try:
            job = client.wait(job_id, 30)
        except TimeoutError:
            raise AssertionError(f"{client.get(job_id)}\n{daemon.stderr}") from None
        assert job.state is JobState.SUCCEEDED, job
    assert_sane(client)
    assert "submits refused" in workspace.error_log()

    filler.unlink()
    wait_for(lambda: not refused_full(client, echo), timeout=10, what="submits accepted again")
    after = client.submit(
        [JobSpec(class_name="Echo", method="handle", params=[i]) for i in range(5)]
    )
    for job_id in after.ids:
        assert client.wait(job_id, 30).state is JobState.SUCCEEDED
    assert (small_disk / "bgjobd.reserve").exists(), "the reserve is made again"
    assert_sane(client)
    assert daemon.stop() == 0, daemon.stderr


def test_failed_commits_lose_no_outcome(workspace: Workspace, small_disk: Path) -> None:
    """No guard (min_free_space = 0): the WAL cannot grow, commits fail with SQLITE_FULL.
    Submits get store_full; the attempts' outcomes (too big for the WAL as it is) are kept
    and committed once space returns, with no restart."""
    workspace.write_config(
        {"daemon": {"min_free_space": 0}, "allowed_jobs": {"SlowBigResult": ["handle"]}}
    )
    daemon = workspace.start_daemon()
    client = workspace.client()
    running = client.submit(
        [JobSpec(class_name="SlowBigResult", method="handle", params=[1.0, 150_000])] * 2
    ).ids
    wait_for(lambda: client.stats().counts["running"] == 2, what="the attempts to start")
    filler = fill(small_disk)
    big = JobSpec(class_name="Echo", method="handle", params=["y" * 100_000])
    wait_for(lambda: refused_full(client, big), timeout=10, what="a store_full reply")
    wait_for(lambda: "commit failed" in daemon.stderr, timeout=10, what="an outcome's commit")
    assert_sane(client)
    wait_for(
        lambda: all(w.busy_with is None for w in client.stats().workers),
        timeout=15,
        what="the attempts to end",
    )
    assert_sane(client)

    filler.unlink()
    wait_for(lambda: not refused_full(client, big), timeout=15, what="commits to work again")
    for job_id in running:
        job = client.wait(job_id, 30)
        assert job.state is JobState.SUCCEEDED, job
        assert job.result == "r" * 150_000
    later = client.submit([JobSpec(class_name="Echo", method="handle", params=["z"])]).ids[0]
    assert client.wait(later, 30).state is JobState.SUCCEEDED
    if "WAL checkpoint failed" in daemon.stderr:  # the checkpoint thread lived on
        try:
            wait_for(lambda: "checkpoints work again" in daemon.stderr, timeout=20)
        except AssertionError:
            raise AssertionError(daemon.stderr) from None
    assert daemon.stop() == 0, daemon.stderr

    # What the daemon acknowledged is what a fresh start finds.
    restarted = workspace.start_daemon()
    again = workspace.client()
    for job_id in [*running, later]:
        assert again.get(job_id).state is JobState.SUCCEEDED
    assert restarted.stop() == 0


def test_sigterm_on_a_full_disk_exits_0(workspace: Workspace, small_disk: Path) -> None:
    """Stopping while the disk is full: the running attempt is interrupted and recorded (the
    reserve makes room for the last commit), and the exit code says all went well."""
    workspace.write_config({"daemon": {"min_free_space": "1MiB"}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="Sleep", method="handle", params=[60])]).ids[0]
    wait_for(lambda: client.stats().counts["running"] == 1, what="the attempt to start")
    filler = fill(small_disk)
    echo = JobSpec(class_name="Echo", method="handle", params=["x"])
    wait_for(lambda: refused_full(client, echo), timeout=10, what="a store_full refusal")
    client.close()
    assert daemon.stop() == 0, daemon.stderr

    filler.unlink()
    restarted = workspace.start_daemon()
    job = workspace.client().get(job_id)
    assert job.state in (JobState.QUEUED, JobState.RUNNING), job  # given back, runs again
    assert job.attempts <= 1, job
    assert restarted.stop() == 0


def test_min_free_space_applies_on_reload(workspace: Workspace, small_disk: Path) -> None:
    workspace.write_config({"daemon": {"min_free_space": "1MiB"}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    echo = JobSpec(class_name="Echo", method="handle", params=["x"])
    client.submit([echo])
    workspace.write_config({"daemon": {"min_free_space": "3MiB"}})  # more than the disk
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: refused_full(client, echo), timeout=10, what="a store_full refusal")
    workspace.write_config({"daemon": {"min_free_space": "1MiB"}})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: not refused_full(client, echo), timeout=10, what="submits accepted")
    assert daemon.stop() == 0
