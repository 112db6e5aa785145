"""Nothing bgjobd writes is readable by other users, whatever the umask it starts with; an
operators' group gets read access when configured; older, looser files are tightened."""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobs.model import JobSpec, JobState
from tests.support.other_user import NOBODY, as_nobody, hello_over, needs_root, readable_files
from tests.support.workspace import Workspace


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask 022, inherited by the daemons and commands the test starts."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def storage_reachable_by_others(workspace: Workspace) -> Path:
    """Storage in a directory other users can traverse (the test's own are 0700), so only
    the modes bgjobd gives its files stand between them and the data."""
    workspace.socket_dir.chmod(0o711)
    storage = workspace.socket_dir / "storage"
    workspace.write_config(
        {"daemon": {"storage": str(storage)}, "allowed_jobs": {"Chatty": ["handle", "fail"]}}
    )
    return storage


def everything_under(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def run_printing_failure(workspace: Workspace) -> int:
    with workspace.client() as client:
        job_id = client.submit(
            [JobSpec(class_name="Chatty", method="fail", params=["secret-param-4711"])]
        ).ids[0]
        assert client.wait(job_id, 30).state is JobState.FAILED
    return job_id


def test_every_file_is_private_under_umask_022(
    workspace: Workspace, loose_umask: None, tmp_path: Path
) -> None:
    storage = storage_reachable_by_others(workspace)
    daemon = workspace.start_daemon()
    job_id = run_printing_failure(workspace)
    assert (storage / "logs" / "jobs" / f"{job_id}.log").read_text().strip() == (
        "secret-param-4711"
    )
    assert (storage / "bgjobs.db-wal").exists()  # checked while the daemon runs
    for path in everything_under(storage):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is open to others"
    daemon.stop()
    # run_job.py (no daemon) writes with the same care.
    done = workspace.run_job("Chatty", "fail", "secret-param-4712")
    assert done.returncode == 1, done.stderr
    for path in everything_under(storage):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is open to others"


@needs_root
def test_another_user_reads_nothing_and_is_refused_by_the_socket(
    workspace: Workspace, loose_umask: None
) -> None:
    storage = storage_reachable_by_others(workspace)
    workspace.start_daemon()
    run_printing_failure(workspace)
    names = {path.name for path in everything_under(storage)}
    assert {"bgjobs.db", "bgjobs.db-wal", "background_jobs.log"} <= names
    assert any(name.endswith(".log") and name[0].isdigit() for name in names)
    assert as_nobody(readable_files(storage)) == ""
    assert as_nobody(hello_over(workspace.socket_path)) == "connect: PermissionError"


def _nogroup() -> grp.struct_group:
    try:
        return grp.getgrgid(NOBODY)
    except KeyError:
        pytest.skip("no group 65534 on this host")


@needs_root
def test_an_operators_group_may_read(workspace: Workspace, loose_umask: None) -> None:
    group = _nogroup()
    storage = storage_reachable_by_others(workspace)
    workspace.write_config(
        {
            "daemon": {"storage": str(storage), "group": group.gr_name},
            "allowed_jobs": {"Chatty": ["handle", "fail"]},
        }
    )
    workspace.start_daemon()
    job_id = run_printing_failure(workspace)
    for path in everything_under(storage):
        info = path.stat()
        mode = stat.S_IMODE(info.st_mode)
        if path.name.endswith(".token"):
            assert mode == 0o600, path
        elif path.is_dir():
            assert (mode, info.st_gid) == (0o2750, group.gr_gid), path
        else:
            assert mode & 0o037 == 0 and info.st_gid == group.gr_gid, (path, oct(mode))
    output = storage / "logs" / "jobs" / f"{job_id}.log"
    assert stat.S_IMODE(output.stat().st_mode) == 0o640
    # A member of the group (the child runs with gid 65534) reads the job's output.
    assert str(output) in as_nobody(readable_files(storage)).splitlines()


def test_an_unknown_group_is_refused_at_start(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"group": "no-such-group-bgjobs"}})
    daemon = workspace.start_daemon(ready=False)
    assert daemon.process.wait(30) == 2
    assert "daemon.group: there is no group named 'no-such-group-bgjobs'" in daemon.stderr
    assert not workspace.socket_path.exists()


@needs_root
def test_an_earlier_versions_loose_files_are_tightened_but_not_others_files(
    workspace: Workspace,
) -> None:
    storage = workspace.storage
    output = storage / "logs" / "jobs"
    output.mkdir(parents=True, mode=0o755)
    for directory in (storage, storage / "logs", output):
        directory.chmod(0o755)
    ours = [storage / "logs" / "background_jobs.log", output / "1.log", storage / "bgjobs.db"]
    for path in ours:
        path.write_bytes(b"")
        path.chmod(0o644)
    foreign = output / "2.log"
    foreign.write_text("not bgjobd's")
    foreign.chmod(0o644)
    os.chown(foreign, NOBODY, NOBODY)
    os.remove(storage / "bgjobs.db")  # an empty file is not a database
    ours.pop()

    workspace.start_daemon()
    for path in [storage, storage / "logs", output, *ours]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o644
    assert foreign.stat().st_uid == NOBODY
    log = workspace.log()
    assert f"tightened {output / '1.log'}: mode 0644 -> 0600" in log
    assert "2.log" not in log


def test_a_storage_directory_writable_by_everyone_is_refused(workspace: Workspace) -> None:
    shared = workspace.socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    workspace.write_config({"daemon": {"storage": str(shared)}})
    daemon = workspace.start_daemon(ready=False)
    assert daemon.process.wait(30) == 2
    assert "is writable by every user" in daemon.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
