"""`bgjobctl logs ID --follow` streams a running job's output as it is printed and exits when
the job ends, printing exactly what the job's output file ends up holding."""

from __future__ import annotations

import subprocess
import sys
from typing import IO

from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

FIRST = b"first line, before the gate\n"
SECOND = b"second line, after the gate\n"


def _follow(workspace: Workspace, job_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bgjobctl", "logs", str(job_id), "--follow"],
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _read_exactly(stream: IO[bytes] | None, size: int) -> bytes:
    assert stream is not None
    return stream.read(size)


def _talker(workspace: Workspace, extra: dict[str, object] | None = None) -> tuple[int, str]:
    workspace.write_config({"allowed_jobs": {"Talker": ["handle"]}, **(extra or {})})
    workspace.start_daemon()
    gate = workspace.root / "gate"
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="Talker", method="handle", params=[str(gate)])]).ids[
        0
    ]
    return job_id, str(gate)


def test_follow_prints_while_the_job_runs_and_exits_when_it_ends(workspace: Workspace) -> None:
    job_id, _ = _talker(workspace)
    client = workspace.client()
    with _follow(workspace, job_id) as follower:
        try:
            assert _read_exactly(follower.stdout, len(FIRST)) == FIRST
            # The job waits at its gate: this came while it ran.
            assert client.get(job_id).state is JobState.RUNNING
            workspace.root.joinpath("gate").touch()
            rest = _read_exactly(follower.stdout, 1 << 16)
            assert follower.wait(30) == 0
        finally:
            follower.kill()
    assert rest == SECOND
    assert client.get(job_id).state is JobState.SUCCEEDED
    on_disk = (workspace.storage / "logs" / "jobs" / f"{job_id}.log").read_bytes()
    assert FIRST + rest == on_disk


def test_a_cut_output_follows_with_its_tail_at_the_end(workspace: Workspace) -> None:
    """Past the head (half of max_output_bytes) the output waits in the worker's memory:
    the head streams, the cut and the tail come as the attempt ends, nothing twice."""
    job_id, _ = _talker(workspace, {"jobs": {"Talker": {"max_output_bytes": 40}}})
    client = workspace.client()
    with _follow(workspace, job_id) as follower:
        try:
            head = _read_exactly(follower.stdout, 20)
            assert client.get(job_id).state is JobState.RUNNING
            workspace.root.joinpath("gate").touch()
            rest = _read_exactly(follower.stdout, 1 << 16)
            assert follower.wait(30) == 0
        finally:
            follower.kill()
    assert head == FIRST[:20]
    on_disk = (workspace.storage / "logs" / "jobs" / f"{job_id}.log").read_bytes()
    assert b"cut ...]" in on_disk
    assert head + rest == on_disk


def test_logs_of_a_running_job_show_its_output_so_far(workspace: Workspace) -> None:
    job_id, _ = _talker(workspace)
    client = workspace.client()
    wait_for(lambda: client.get(job_id).state is JobState.RUNNING)

    def printed() -> str:
        shown = workspace.bgjobctl("logs", str(job_id))
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    assert wait_for(printed).encode() == FIRST
    workspace.root.joinpath("gate").touch()
    wait_for(lambda: client.get(job_id).state.is_final)
    assert workspace.bgjobctl("logs", str(job_id)).stdout.encode() == FIRST + SECOND
