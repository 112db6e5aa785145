"""Outcome files (bgjobd/donefiles.py): a worker appends each attempt's outcome to a file of
its own; recovery reads the latest record of each job; the files a worker has moved past,
and those of workers that are gone, are removed. In-process (the files are real), plus a
daemon whose workers run enough jobs to move to a second file."""

from __future__ import annotations

import os
from pathlib import Path

from bgjobctl.library import make_spec
from bgjobd import donefiles
from bgjobd.worker.messages import AttemptDone
from bgjobs.model import JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

PATTERN = f"{donefiles.PREFIX}*{donefiles.SUFFIX}"


def _done(job_id: int, attempt: int, result: object = None) -> AttemptDone:
    return AttemptDone(job_id=job_id, attempt=attempt, duration=0.001, result=result)


def test_the_latest_attempt_of_each_job_is_found(tmp_path: Path) -> None:
    lock = str(tmp_path / "Echo_handle_1.lock")
    first, second = donefiles.Outcomes(os.getpid()), donefiles.Outcomes(os.getpid() + 1)
    first.keep(lock, _done(1, 1, "one"))
    first.keep(lock, _done(2, 1, "two"))
    second.keep(lock, _done(1, 2, "one again"))
    first.close()
    second.close()
    found = donefiles.found(tmp_path)
    assert {job_id: record.done.result for job_id, record in found.items()} == {
        1: "one again",
        2: "two",
    }
    assert len(list(tmp_path.glob(PATTERN))) == 2  # one file per worker, not per attempt


def test_a_record_cut_short_is_ignored_and_the_earlier_ones_kept(tmp_path: Path) -> None:
    outcomes = donefiles.Outcomes(os.getpid())
    outcomes.keep(str(tmp_path / "x.lock"), _done(1, 1, "kept"))
    outcomes.keep(str(tmp_path / "x.lock"), _done(2, 1, "cut"))
    outcomes.close()
    [path] = tmp_path.glob(PATTERN)
    path.write_bytes(path.read_bytes()[:-3])  # the worker killed in its second write
    assert {job_id: r.done.result for job_id, r in donefiles.found(tmp_path).items()} == {1: "kept"}


def test_a_full_file_is_followed_by_another_and_the_old_one_is_superseded(
    tmp_path: Path,
) -> None:
    outcomes = donefiles.Outcomes(os.getpid())
    big = "x" * (donefiles.FILE_BYTES // 3)
    for job_id in range(1, 5):
        outcomes.keep(str(tmp_path / "x.lock"), _done(job_id, 1, big))
    outcomes.close()
    files = donefiles.files_of(str(tmp_path), os.getpid())
    assert len(files) == 2
    assert donefiles.superseded(str(tmp_path), os.getpid()) == files[:1]
    assert sorted(donefiles.found(tmp_path)) == [1, 2, 3, 4]  # both files are read
    donefiles.remove(files[:1])
    assert sorted(donefiles.found(tmp_path)) == [4]


def test_settled_files_of_workers_that_are_gone_are_removed(tmp_path: Path) -> None:
    """A file goes once its worker is gone and every job it has a record of is settled."""
    for pid, job_ids in ((os.getpid(), [1]), (999_998, [1]), (999_999, [1, 2])):
        outcomes = donefiles.Outcomes(pid)
        for job_id in job_ids:
            outcomes.keep(str(tmp_path / "x.lock"), _done(job_id, 1))
        outcomes.close()
    assert sorted(sorted(jobs) for _path, jobs in donefiles.left_behind(tmp_path)) == [[1], [1, 2]]
    donefiles.remove_settled(tmp_path, {1})
    left = sorted(path.name for path in tmp_path.glob(PATTERN))
    assert left == sorted(
        Path(donefiles.path_of(str(tmp_path), pid, 0)).name for pid in (os.getpid(), 999_999)
    )  # the live worker's, and the one with a record of job 2


def test_a_busy_worker_keeps_a_bounded_number_of_files(workspace: Workspace) -> None:
    """Each no-op job leaves a record of about 120 bytes: 256 KiB of them fill a file, so
    7,000 jobs on one worker make it move on three times; the files it moved past are
    removed, and it never has more than two."""
    workspace.write_config({"allowed_jobs": {"Echo": ["handle"]}, "daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    locks_dir = workspace.storage / "jobs"
    jobs = 7000
    for start in range(0, jobs, 500):
        client.submit([make_spec("Echo", "handle", [n]) for n in range(start, start + 500)])
    wait_for(
        lambda: client.stats().counts.get("succeeded", 0) == jobs,
        timeout=100,
        what="every job to succeed",
    )
    assert client.stats().counts.get(JobState.FAILED.value, 0) == 0
    first = f"{donefiles.PREFIX}*-0{donefiles.SUFFIX}"
    wait_for(lambda: not list(locks_dir.glob(first)), what="the first file to go")
    assert 1 <= len(list(locks_dir.glob(PATTERN))) <= 2
