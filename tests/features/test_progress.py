"""`bgjobs.progress`: a running job's updates reach `Get`, the event stream, `bgjobctl show`
and `bgjobctl watch`; bad values are refused or clamped; outside a worker it is harmless."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import bgjobs
from bgjobctl import run_background_job
from bgjobctl.client import Client
from bgjobd.testing import RecordedJobs
from bgjobs.model import JobInfo, JobSpec, JobState
from bgjobs.progress import MAX_MESSAGE, clean_fraction, clean_message
from tests.support.waiting import wait_for
from tests.support.workspace import DEFAULT_SETTINGS, TEST_JOBS, Workspace, merged

ALLOWED = {
    "allowed_jobs": {
        "Reporting": ["halfway", "burst", "refused", "clamped", "forked"],
        "Talker": ["handle"],
    }
}


def _submit(workspace: Workspace, method: str, *params: Any) -> int:
    client = workspace.client()
    return client.submit([JobSpec(class_name="Reporting", method=method, params=list(params))]).ids[
        0
    ]


def _job_when(client: Client, job_id: int, condition: Callable[[JobInfo], bool]) -> JobInfo:
    """The job's record once `condition` holds for it."""

    def check() -> JobInfo | None:
        job = client.get(job_id)
        return job if condition(job) else None

    found = wait_for(check, what=f"job {job_id}")
    assert found is not None
    return found


def _reported(client: Client, job_id: int) -> JobInfo:
    return _job_when(client, job_id, lambda job: job.progress is not None)


def _final(client: Client, job_id: int) -> JobInfo:
    return _job_when(client, job_id, lambda job: job.state.is_final)


def _started(workspace: Workspace) -> Workspace:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    return workspace


def test_progress_shows_in_get_and_show_while_running(workspace: Workspace) -> None:
    _started(workspace)
    gate = workspace.root / "gate"
    job_id = _submit(workspace, "halfway", str(gate))
    client = workspace.client()
    running = _reported(client, job_id)
    assert running.state is JobState.RUNNING
    assert running.progress == pytest.approx(0.4)
    assert running.progress_message == "imported 4,000 rows"
    shown = workspace.bgjobctl("show", str(job_id))
    assert shown.returncode == 0, shown.stderr
    assert "40% imported 4,000 rows" in shown.stdout
    as_json = json.loads(workspace.bgjobctl("--json", "show", str(job_id)).stdout)
    assert as_json["progress"] == pytest.approx(0.4)
    [listed] = client.list_jobs(states=[JobState.RUNNING]).jobs
    assert listed.id == job_id
    assert listed.progress == pytest.approx(0.4)
    gate.touch()
    done = _final(client, job_id)
    assert done.state is JobState.SUCCEEDED
    assert done.progress is None  # progress belongs to a running attempt


def test_progress_events_are_published(workspace: Workspace) -> None:
    _started(workspace)
    gate = workspace.root / "gate"
    client = workspace.client()
    with client.events() as stream:
        job_id = _submit(workspace, "halfway", str(gate))
        events: list[tuple[JobState, float | None, str | None]] = []
        for event in stream:
            if event.job_id != job_id:
                continue
            events.append((event.state, event.progress, event.progress_message))
            if event.progress is not None:
                gate.touch()
            if event.state.is_final:
                break
    # The job reports at once, yet its start comes first (the claim's commit is lazy), and
    # the last update, sent as the attempt ends, comes before the end, never thinned away.
    assert events == [
        (JobState.RUNNING, None, None),
        (JobState.RUNNING, 0.4, "imported 4,000 rows"),
        (JobState.RUNNING, 1.0, "done"),
        (JobState.SUCCEEDED, None, None),
    ]


def test_a_burst_is_thinned_and_its_last_update_arrives(workspace: Workspace) -> None:
    _started(workspace)
    client = workspace.client()
    count = 20000
    with client.events() as stream:
        job_id = _submit(workspace, "burst", count)
        updates = []
        for event in stream:
            if event.job_id == job_id and event.progress is not None:
                updates.append((event.progress, event.progress_message))
            if event.job_id == job_id and event.state.is_final:
                break
    assert client.get(job_id).result is True  # it went to the daemon
    assert updates[-1] == (1.0, "last")
    assert len(updates) < count / 10  # thinned (about ten a second), not one per call


def test_bad_values_are_refused_or_clamped(workspace: Workspace) -> None:
    _started(workspace)
    client = workspace.client()
    refused = _submit(workspace, "refused")
    done = _final(client, refused)
    assert done.state is JobState.SUCCEEDED
    assert done.result == ["ValueError"] * 3 + ["TypeError"] * 4
    gate = workspace.root / "gate"
    clamped = _submit(workspace, "clamped", str(gate))
    job = _reported(client, clamped)
    gate.touch()
    assert job.progress == 1.0
    assert job.progress_message is not None
    assert "\x1b" not in job.progress_message
    assert job.progress_message.startswith("\\x1b[31mred\\x1b[0m xxx")
    assert job.progress_message.endswith("characters cut)")


def test_a_forked_child_does_not_report(workspace: Workspace) -> None:
    _started(workspace)
    client = workspace.client()
    gate = workspace.root / "gate"
    with client.events() as stream:
        job_id = _submit(workspace, "forked", str(gate))
        seen = []
        for event in stream:
            if event.job_id == job_id and event.progress is not None:
                seen.append(event.progress_message)
                gate.touch()
            if event.job_id == job_id and event.state.is_final:
                break
    assert seen == ["from the worker"]
    assert client.get(job_id).state is JobState.SUCCEEDED


def test_watch_follows_a_job_until_it_ends(workspace: Workspace) -> None:
    _started(workspace)
    gate = workspace.root / "gate"
    job_id = _submit(workspace, "halfway", str(gate))
    with subprocess.Popen(
        [sys.executable, "-m", "bgjobctl", "--json", "watch", str(job_id)],
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as watch:
        try:
            assert watch.stdout is not None
            lines = []
            for line in watch.stdout:
                lines.append(json.loads(line))
                if lines[-1].get("progress") == pytest.approx(0.4):
                    gate.touch()
            assert watch.wait(30) == 0
        finally:
            watch.kill()
    first = next(line for line in lines if line.get("progress") is not None)
    assert first["progress_message"] == "imported 4,000 rows"
    assert lines[-1]["state"] == "succeeded"


def test_watch_in_text(workspace: Workspace) -> None:
    _started(workspace)
    gate = workspace.root / "gate"
    gate.touch()
    job_id = _submit(workspace, "halfway", str(gate))
    watched = workspace.bgjobctl("watch", str(job_id))
    assert watched.returncode == 0, watched.stderr
    *changes, summary = watched.stdout.splitlines()
    assert "succeeded" in changes[-1]
    assert summary == 'result: "finished"'
    failed = workspace.client().submit([JobSpec(class_name="Fail", method="handle")]).ids[0]
    assert workspace.bgjobctl("watch", str(failed)).returncode == 1
    assert workspace.bgjobctl("watch", "999999").returncode != 0


def test_outside_a_worker_it_does_nothing(tmp_path: Path) -> None:
    assert bgjobs.progress(0.5, "in a test") is False
    with pytest.raises(ValueError):
        bgjobs.progress(float("nan"))
    assert clean_fraction(-3) == 0.0
    assert clean_fraction(2) == 1.0
    assert clean_message("") is None
    assert len(clean_message("y" * 5000) or "") < MAX_MESSAGE + 40
    script = tmp_path / "plain.py"
    script.write_text("import bgjobs\nprint(bgjobs.progress(0.5, 'plain'))\n")
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (ran.returncode, ran.stdout) == (0, "False\n"), ran.stderr


@pytest.fixture
def bgjobs_config(tmp_path: Path) -> str:
    """For the testing mode: the test jobs, with `Reporting` allowed."""
    (tmp_path / "testjobs").symlink_to(TEST_JOBS, target_is_directory=True)
    path = tmp_path / "bgjobs.toml"
    path.write_bytes(tomli_w.dumps(merged(DEFAULT_SETTINGS, ALLOWED)).encode())
    return str(path)


def test_in_the_testing_mode_it_does_nothing(bgjobs_eager: RecordedJobs) -> None:
    """A job that reports runs eagerly in the test's process as it would in a worker; its
    updates go nowhere."""
    assert run_background_job("Reporting", "burst", [50]).wait() is False
