"""max_output_bytes: what an attempt prints (its grandchildren included) is kept as its head
and its tail, with a line saying how much was cut in between."""

from __future__ import annotations

import re

from bgjobs.model import JobInfo, JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

MIB = 1024 * 1024


def _run(workspace: Workspace, spec: JobSpec, timeout: float = 60.0) -> JobInfo:
    client = workspace.client()
    job_id = client.submit([spec]).ids[0]

    def final() -> JobInfo | None:
        job = client.get(job_id)
        return job if job.state.is_final else None

    found = wait_for(final, timeout=timeout, what=f"job {job_id} to end")
    assert found is not None
    return found


def test_a_flood_keeps_the_head_and_the_tail(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": {"Flood": ["handle"]}, "max_output_bytes": "1MiB"})
    workspace.start_daemon()
    flood = 200 * MIB
    job = _run(workspace, JobSpec(class_name="Flood", method="handle", params=[flood]))
    assert job.state is JobState.SUCCEEDED, job.error
    output = workspace.storage / "logs" / "jobs" / f"{job.id}.log"
    size = output.stat().st_size
    assert MIB <= size <= MIB + 200, size
    text = output.read_bytes()
    assert text.startswith(b"FIRST-LINE\n0123456789abcdef\n")
    assert text.endswith(b"LAST-LINE\n")
    assert b"0123456789abcdef\n" in text[-1000:]
    cut = re.findall(rb"\n\[\.\.\. ([0-9.]+ MiB) cut \.\.\.\]\n", text)
    assert cut == [b"199 MiB"], cut
    # `bgjobctl logs` shows the same file.
    logs = workspace.bgjobctl("logs", str(job.id))
    assert logs.returncode == 0 and "cut ...]" in logs.stdout


def test_output_under_the_limit_is_kept_whole(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": {"Flood": ["handle"]}, "max_output_bytes": "1MiB"})
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Flood", method="handle", params=[MIB - 100]))
    assert job.state is JobState.SUCCEEDED, job.error
    text = (workspace.storage / "logs" / "jobs" / f"{job.id}.log").read_bytes()
    assert b"cut ...]" not in text
    assert len(text) == MIB - 100 + len(b"FIRST-LINE\n") + len(b"LAST-LINE\n")


def test_a_timed_out_flood_keeps_its_tail_too(workspace: Workspace) -> None:
    """The daemon SIGTERMs the worker at the deadline: the attempt unwinds, and the tail and
    the marker are written before the worker exits."""
    workspace.write_config(
        {
            "allowed_jobs": {"Chatty": ["handle"]},
            "max_output_bytes": "64KiB",
            "jobs": {"Chatty": {"timeout": 2}},
        }
    )
    workspace.start_daemon()
    text = "line of output " * 10_000 + "END-OF-PRINT"
    job = _run(workspace, JobSpec(class_name="Chatty", method="handle", params=[text, 30]))
    assert job.state is JobState.FAILED and job.error is not None
    assert job.error.type == "TimeoutError", job.error
    output = (workspace.storage / "logs" / "jobs" / f"{job.id}.log").read_bytes()
    assert output.startswith(b"line of output")
    assert output.rstrip().endswith(b"END-OF-PRINT"), output[-200:]
    assert b"cut ...]" in output and len(output) <= 64 * 1024 + 200


def test_a_killed_worker_keeps_the_head_and_says_the_rest_was_lost(workspace: Workspace) -> None:
    """SIGKILL leaves no time to write the tail (it lived in the worker's memory)."""
    workspace.write_config(
        {
            "allowed_jobs": {"Stubborn": ["handle"]},
            "max_output_bytes": "64KiB",
            "jobs": {"Stubborn": {"timeout": 1}},
        }
    )
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Stubborn", method="handle", params=[200_000, 60]))
    assert job.state is JobState.FAILED and job.error is not None
    assert job.error.type == "TimeoutError", job.error
    output = (workspace.storage / "logs" / "jobs" / f"{job.id}.log").read_bytes()
    assert output == b"s" * 32 * 1024 + b"\n[... the rest was lost: the worker was killed ...]\n"
