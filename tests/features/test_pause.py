"""Pause and resume through `bgjobctl`, against a real daemon: a paused class's jobs stay
queued (and keep being accepted) through a restart while other classes run; resume
releases them; `--all`; stats shows the pauses; bad input changes nothing."""

from __future__ import annotations

import json

from bgjobctl.client import Client
from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def submit(client: Client, class_name: str, *params: object) -> int:
    return client.submit(
        [JobSpec(class_name=class_name, method="handle", params=list(params))]
    ).ids[0]


def state(client: Client, job_id: int) -> JobState:
    return client.get(job_id).state


def test_a_paused_class_stays_queued_through_a_restart_while_others_run(
    workspace: Workspace,
) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    paused = workspace.bgjobctl("pause", "--class", "Sleep")
    assert paused.returncode == 0, paused.stderr
    assert "paused class Sleep" in paused.stdout

    held = submit(client, "Sleep", 0)  # first in the claim order: only the pause holds it
    ran = submit(client, "Echo", "x")
    assert client.wait(ran, 10).state is JobState.SUCCEEDED
    assert state(client, held) is JobState.QUEUED

    daemon.stop()
    workspace.start_daemon()
    client = workspace.client()
    after_restart = submit(client, "Echo", "y")
    assert client.wait(after_restart, 10).state is JobState.SUCCEEDED
    assert state(client, held) is JobState.QUEUED

    stats = workspace.bgjobctl("stats")
    assert "paused: class Sleep" in stats.stdout
    as_json = json.loads(workspace.bgjobctl("--json", "stats").stdout)
    assert [(p["kind"], p["name"]) for p in as_json["paused"]] == [("class", "Sleep")]

    resumed = workspace.bgjobctl("resume", "--class", "Sleep")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed class Sleep" in resumed.stdout and "paused: nothing" in resumed.stdout
    job = client.wait(held, 10)
    assert job.state is JobState.SUCCEEDED and job.attempts == 1


def test_pause_all_holds_every_class_until_resumed(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    assert workspace.bgjobctl("pause", "--all").returncode == 0
    ids = [submit(client, "Echo", "a"), submit(client, "Add", 1, 2)]
    daemon.stop()  # a start claims whatever it may: nothing, here
    workspace.start_daemon()
    client = workspace.client()
    assert [state(client, job_id) for job_id in ids] == [JobState.QUEUED] * 2
    assert "paused: all jobs" in workspace.bgjobctl("stats").stdout
    assert workspace.bgjobctl("resume", "--all").returncode == 0
    assert [client.wait(job_id, 10).state for job_id in ids] == [JobState.SUCCEEDED] * 2


def test_pause_twice_and_resume_what_is_not_paused_say_so(workspace: Workspace) -> None:
    workspace.write_config({"queues": {"mail": {"workers": 1}}})
    workspace.start_daemon()
    assert workspace.bgjobctl("pause", "--queue", "mail").returncode == 0
    again = workspace.bgjobctl("pause", "--queue", "mail")
    assert again.returncode == 0 and "queue mail was paused already" in again.stdout
    none = workspace.bgjobctl("resume", "--class", "Echo")
    assert none.returncode == 0 and "class Echo was not paused" in none.stdout
    listed = json.loads(workspace.bgjobctl("--json", "resume", "--queue", "mail").stdout)
    assert listed == {"changed": True, "paused": []}


def test_bad_pause_requests_change_nothing(workspace: Workspace) -> None:
    workspace.start_daemon()
    unknown = workspace.bgjobctl("pause", "--class", "NoSuchJob")
    assert unknown.returncode == 2
    assert "unknown class 'NoSuchJob'" in unknown.stderr
    assert workspace.bgjobctl("pause").returncode == 2  # which one?
    assert workspace.bgjobctl("pause", "--class", "Echo", "--all").returncode == 2
    assert workspace.bgjobctl("pause", "--queue", "").returncode == 2
    assert workspace.bgjobctl("pause", "--queue", "bad name").returncode == 2
    assert "paused: nothing" in workspace.bgjobctl("stats").stdout


def test_an_unknown_queue_is_refused_a_known_one_taken(workspace: Workspace) -> None:
    """Known: configured here (a name with '-' and '.' too), or with a job in the store
    (another node's queue, or one this node's configuration dropped); an allow-listed
    class with no job yet. Unknown: an error (exit 2) that stores nothing."""
    workspace.write_config({"queues": {"mail-out.eu": {"workers": 0}}})
    daemon = workspace.start_daemon()
    held = submit_to(workspace.client(), "mail-out.eu")
    daemon.stop()
    workspace.write_config({"queues": {"reports": {"workers": 1}}})
    workspace.start_daemon()

    unknown = workspace.bgjobctl("pause", "--queue", "nowhere")
    assert unknown.returncode == 2
    assert "unknown queue 'nowhere'" in unknown.stderr and "reports" in unknown.stderr
    assert workspace.bgjobctl("resume", "--queue", "nowhere").returncode == 2
    assert workspace.bgjobctl("cancel", "--queue", "nowhere", "--yes").returncode == 2
    assert "paused: nothing" in workspace.bgjobctl("stats").stdout

    for args in (("--queue", "reports"), ("--queue", "mail-out.eu"), ("--class", "Add")):
        paused = workspace.bgjobctl("pause", *args)
        assert paused.returncode == 0, paused.stderr
    listed = json.loads(workspace.bgjobctl("--json", "stats").stdout)["paused"]
    assert sorted((p["kind"], p["name"]) for p in listed) == [
        ("class", "Add"),
        ("queue", "mail-out.eu"),
        ("queue", "reports"),
    ]
    assert state(workspace.client(), held) is JobState.QUEUED


def submit_to(client: Client, queue: str) -> int:
    return client.submit(
        [JobSpec(class_name="Echo", method="handle", params=["q"], queue=queue)]
    ).ids[0]


def test_run_job_runs_a_paused_class_and_says_so(workspace: Workspace) -> None:
    workspace.start_daemon()
    assert workspace.bgjobctl("pause", "--class", "Echo").returncode == 0
    ran = workspace.run_job("Echo", "handle", "hi")
    assert ran.returncode == 0, ran.stderr
    assert "class Echo paused; run_job.py runs it anyway" in ran.stderr
    assert "succeeded" in ran.stdout
