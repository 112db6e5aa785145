"""Contained attempts: a job's escaped grandchild (double fork + setsid) dies with its
attempt on every exit path, and never holds the daemon; memory and open-file limits.

The escape tests run twice where the host allows: with a cgroup per worker, and with the
subreaper alone (`BGJOBS_CGROUPS=off`), the fallback for hosts without a writable cgroup.
The grandchild sleeps far longer than any wait here, so a test that waits on it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import msgspec
import pytest

from bgjobd import cgroups, limits
from bgjobd.containment import children
from bgjobd.worker.messages import AttemptDone, RunAttempt
from bgjobs.model import ErrorInfo, JobSpec, JobState, Outcome
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

GRANDCHILD_SECONDS = 300
JOBS = {
    "Escape": ["handle"],
    "Allocate": ["handle"],
    "OpenFiles": ["handle"],
    "ManyFiles": ["handle"],
    "Descriptors": ["handle"],
}


def _cgroups_here() -> bool:
    mount, own = cgroups.cgroup2_mount(), cgroups.own_cgroup()
    return (
        mount is not None
        and own is not None
        and os.access(mount / own.lstrip("/") / "cgroup.procs", os.W_OK)
    )


@pytest.fixture(params=["cgroup", "subreaper"])
def space(request: pytest.FixtureRequest, workspace: Workspace) -> Workspace:
    if request.param == "cgroup" and not _cgroups_here():
        pytest.skip("no writable cgroup v2 here")
    if request.param == "subreaper":
        workspace.env[cgroups.SWITCH_ENV] = "off"
    workspace.write_config({"allowed_jobs": JOBS})
    return workspace


def _escape(space: Workspace, name: str = "grandchild", then: str = "hang") -> JobSpec:
    return JobSpec(
        class_name="Escape",
        method="handle",
        params=[str(space.root / name), GRANDCHILD_SECONDS, then],
    )


def _grandchild(space: Workspace, name: str = "grandchild") -> int:
    path = space.root / name
    wait_for(path.exists, what="the grandchild's pid file")
    pid = int(path.read_text())
    assert not is_gone(pid)
    return pid


def _gone(pid: int) -> None:
    wait_for(lambda: is_gone(pid), timeout=10, what=f"process {pid} to be gone")


def _worker_cgroup(pid: int) -> str:
    return cgroups.own_cgroup(pid) or ""


def test_a_timeout_ends_the_attempt_and_the_grandchild(space: Workspace) -> None:
    space.write_config({"allowed_jobs": JOBS, "jobs": {"Escape": {"timeout": 2}}})
    space.start_daemon()
    client = space.client()
    job_id = client.submit([_escape(space)]).ids[0]
    grandchild = _grandchild(space)
    job = client.wait(job_id, 2 + 1 + 15)
    assert job.state is JobState.FAILED
    assert job.history[-1].outcome is Outcome.TIMED_OUT
    _gone(grandchild)


def test_a_worker_deaf_to_sigterm_is_killed_after_the_grace_and_so_is_the_grandchild(
    space: Workspace,
) -> None:
    """The worker cannot kill the grandchild itself: it dies by SIGKILL, the grandchild
    goes with its cgroup, or (subreaper) is reparented to the daemon, which kills it."""
    space.write_config({"allowed_jobs": JOBS, "jobs": {"Escape": {"timeout": 1}}})
    space.start_daemon()
    client = space.client()
    job_id = client.submit([_escape(space, then="stubborn")]).ids[0]
    grandchild = _grandchild(space)
    job = client.wait(job_id, 1 + 1 + 15)
    assert job.history[-1].outcome is Outcome.TIMED_OUT
    _gone(grandchild)
    daemon = space.daemons[-1].pid
    wait_for(
        lambda: not [pid for pid in children(daemon) if is_gone(pid)],
        timeout=10,
        what="the daemon to reap what it killed",
    )


def test_a_cancel_ends_the_attempt_and_the_grandchild(space: Workspace) -> None:
    space.start_daemon()
    client = space.client()
    job_id = client.submit([_escape(space)]).ids[0]
    grandchild = _grandchild(space)
    client.cancel(job_id)
    job = client.wait(job_id, 15)
    assert job.state is JobState.CANCELLED
    _gone(grandchild)


def test_a_plain_job_behind_two_escaping_ones_runs_once_they_time_out(
    space: Workspace,
) -> None:
    space.write_config({"allowed_jobs": JOBS, "jobs": {"Escape": {"timeout": 2}}})
    space.start_daemon()
    client = space.client()
    client.submit([_escape(space, "first"), _escape(space, "second")])
    plain = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
    grandchildren = [_grandchild(space, "first"), _grandchild(space, "second")]
    assert client.wait(plain, 2 + 1 + 15).state is JobState.SUCCEEDED
    for pid in grandchildren:
        _gone(pid)


def test_sigterm_stops_the_daemon_and_the_grandchild_within_the_shutdown_timeout(
    space: Workspace,
) -> None:
    space.write_config({"allowed_jobs": JOBS, "daemon": {"shutdown_timeout": 2}})
    daemon = space.start_daemon()
    space.client().submit([_escape(space)])
    grandchild = _grandchild(space)
    assert daemon.stop(timeout=2 + 1 + 15) == 0
    _gone(grandchild)


def test_sigkill_of_the_daemon_takes_the_grandchild_down(space: Workspace) -> None:
    daemon = space.start_daemon()
    space.client().submit([_escape(space)])
    grandchild = _grandchild(space)
    (worker,) = [w.pid for w in space.client().stats().workers if w.busy_with is not None]
    leaf = _worker_cgroup(worker)
    daemon.kill()
    _gone(grandchild)
    if cgroups.WORKER_PREFIX in leaf:
        # The dead daemon's cgroups are empty now, and the next daemon removes them.
        mount = cgroups.cgroup2_mount()
        assert mount is not None
        subtree = mount / Path(leaf).parent.relative_to("/")
        assert subtree.name.startswith(cgroups.SUBTREE_PREFIX) and subtree.is_dir()
        space.start_daemon()
        assert not subtree.exists()


def test_a_job_that_returns_leaves_nothing_running_and_the_worker_goes_on(
    space: Workspace,
) -> None:
    space.write_config({"allowed_jobs": JOBS, "daemon": {"workers": 1}})
    space.start_daemon()
    client = space.client()
    first = client.wait(client.submit([_escape(space, then="return")]).ids[0], 15)
    assert first.state is JobState.SUCCEEDED
    _gone(first.result)
    plain = client.wait(
        client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0], 15
    )
    assert plain.state is JobState.SUCCEEDED
    assert plain.history[-1].worker_pid == first.history[-1].worker_pid


def test_each_worker_has_a_cgroup_of_its_own(space: Workspace) -> None:
    space.write_config({"allowed_jobs": JOBS, "daemon": {"workers": 2}})
    daemon = space.start_daemon()
    workers = [worker.pid for worker in space.client().stats().workers]
    leaves = [_worker_cgroup(pid) for pid in workers]
    if space.env.get(cgroups.SWITCH_ENV) == "off":
        assert not any(cgroups.WORKER_PREFIX in leaf for leaf in leaves)
        assert "attempts contained by their process group and the subreaper" in daemon.stderr
    else:
        assert [Path(leaf).name for leaf in leaves] == [f"worker-{pid}" for pid in workers]
        assert "attempts contained by a cgroup per worker under" in daemon.stderr


def test_job_code_never_holds_the_workers_pipes(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": JOBS})
    workspace.start_daemon()
    client = workspace.client()
    job = client.wait(
        client.submit([JobSpec(class_name="Descriptors", method="handle")]).ids[0], 15
    )
    assert job.state is JobState.SUCCEEDED, job.error
    assert len(job.result["worker"]) == 2
    assert job.result["forked"] == [] and job.result["execed"] == []


def test_a_job_over_its_memory_limit_fails_as_memory_limit_exceeded(
    workspace: Workspace,
) -> None:
    workspace.write_config(
        {
            "allowed_jobs": JOBS,
            "retry_attempts": 3,
            "jobs": {"Allocate": {"memory_limit": "256MiB"}},
            "exceptions": {"MemoryLimitExceeded": {"action": "fail"}},
            "daemon": {"workers": 1},
        }
    )
    daemon = workspace.start_daemon()
    client = workspace.client()
    job = client.wait(
        client.submit([JobSpec(class_name="Allocate", method="handle", params=[2048])]).ids[0],
        30,
    )
    assert job.state is JobState.FAILED and job.attempts == 1
    assert job.error is not None and job.error.type == "MemoryLimitExceeded"
    assert job.error.hierarchy[0] == "MemoryLimitExceeded"
    assert "256 MiB" in job.error.message
    small = client.wait(
        client.submit([JobSpec(class_name="Allocate", method="handle", params=[16])]).ids[0],
        15,
    )
    assert small.result == 16
    assert daemon.process.poll() is None


def test_a_job_over_its_open_file_limit_fails_and_the_limit_ends_with_it(
    workspace: Workspace,
) -> None:
    workspace.write_config(
        {
            "allowed_jobs": JOBS,
            "jobs": {"OpenFiles": {"max_open_files": 50}},
            "daemon": {"workers": 1},
        }
    )
    workspace.start_daemon()
    client = workspace.client()
    files = workspace.root / "files"
    files.mkdir()

    def run(class_name: str) -> tuple[JobState, str | None]:
        spec = JobSpec(class_name=class_name, method="handle", params=[str(files), 100])
        job = client.wait(client.submit([spec]).ids[0], 15)
        return job.state, job.error.type if job.error else None

    assert run("OpenFiles") == (JobState.FAILED, "OpenFilesLimitExceeded")
    assert run("ManyFiles") == (JobState.SUCCEEDED, None)  # same worker, no limit


def test_a_worker_killed_from_outside_ends_its_attempt_at_once(space: Workspace) -> None:
    """The attempt ends when the worker exits, though its grandchild still held the pipes
    (before the worker killed it)."""
    space.start_daemon()
    client = space.client()
    job_id = client.submit([_escape(space)]).ids[0]
    grandchild = _grandchild(space)
    (worker,) = [w.pid for w in client.stats().workers if w.busy_with is not None]
    os.kill(worker, signal.SIGKILL)
    job = client.wait(job_id, 15)
    assert job.history[-1].outcome is Outcome.CRASHED
    _gone(grandchild)


def test_the_cgroup2_mount_is_found_on_hybrid_and_unified_hosts() -> None:
    hybrid = (
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
    legacy = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    assert cgroups.cgroup2_mount(hybrid) == Path("/sys/fs/cgroup/unified")
    assert cgroups.cgroup2_mount(unified) == Path("/sys/fs/cgroup")
    assert cgroups.cgroup2_mount(legacy) is None


def test_only_errors_under_a_limit_are_named_for_it() -> None:
    request = RunAttempt(
        job_id=1,
        attempt=1,
        class_name="C",
        method="m",
        params=[],
        output_path="o",
        lock_path="l",
        owner="t",
        memory_limit=1 << 20,
        max_open_files=10,
    )
    memory = ErrorInfo(type="MemoryError", message="", hierarchy=["MemoryError", "Exception"])
    files = ErrorInfo(
        type="OSError",
        message="[Errno 24] Too many open files: 'x'",
        hierarchy=["OSError", "Exception"],
    )
    other = ErrorInfo(type="ValueError", message="no", hierarchy=["ValueError", "Exception"])

    def named(error: ErrorInfo, limited: RunAttempt = request) -> str:
        done = AttemptDone(job_id=1, attempt=1, duration=0.0, error=error)
        result = limits.name_limit_errors(done, limited).error
        assert result is not None
        return result.type

    unlimited = msgspec.structs.replace(request, memory_limit=None, max_open_files=None)
    assert named(memory) == "MemoryLimitExceeded"
    assert named(files) == "OpenFilesLimitExceeded"
    assert named(other) == "ValueError"
    assert named(memory, unlimited) == "MemoryError"
    assert named(files, unlimited) == "OSError"


def test_fresh_workers_leave_nothing_running_either(space: Workspace) -> None:
    space.write_config({"allowed_jobs": JOBS, "daemon": {"isolation": "fresh"}})
    space.start_daemon()
    client = space.client()
    job = client.wait(client.submit([_escape(space, then="return")]).ids[0], 15)
    assert job.state is JobState.SUCCEEDED
    _gone(job.result)


def test_run_job_times_out_on_time_and_leaves_no_grandchild(space: Workspace) -> None:
    """run_job.py runs attempts in the same workers, contained the same way."""
    space.write_config({"allowed_jobs": JOBS, "jobs": {"Escape": {"timeout": 2}}})
    pid_file = space.root / "grandchild"
    done = space.run_job("Escape", "handle", f"{pid_file},{GRANDCHILD_SECONDS},hang", timeout=30)
    assert done.returncode == 1, done.stderr
    _gone(int(pid_file.read_text()))


def test_children_are_found_with_or_without_proc_children() -> None:
    """Without CONFIG_PROC_CHILDREN the subreaper finds children by their parent pid."""
    from bgjobd import containment

    sleepers = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        expected = {sleeper.pid for sleeper in sleepers}
        assert expected <= set(containment.children(os.getpid()))
        assert expected <= set(containment._children_by_parent(os.getpid()))
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
