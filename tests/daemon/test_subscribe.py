"""subscribe: a stream of job events, in order, filtered by job when asked."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def test_events_stream_in_order(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    with client.events() as stream:
        job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        states = []
        for event in stream:
            assert event.job_id == job_id and event.class_name == "Echo"
            states.append(event.state)
            if event.state.is_final:
                break
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]


def test_events_of_one_job_only(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    other = client.submit([JobSpec(class_name="Echo", method="handle", delay=0.3)]).ids[0]
    target = client.submit([JobSpec(class_name="Fail", method="handle", delay=0.5)]).ids[0]
    with client.events([target]) as stream:
        seen = []
        for event in stream:
            seen.append(event)
            if event.state.is_final:
                break
    assert {event.job_id for event in seen} == {target}
    assert [event.state for event in seen] == [JobState.QUEUED, JobState.RUNNING, JobState.FAILED]
    assert client.get(other).state is JobState.SUCCEEDED
