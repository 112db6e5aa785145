"""subscribe: a stream of job events, in order, filtered by job when asked."""

from __future__ import annotations

from bgjobctl.client import EventStream
from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def _states_until_final(job_id: int, stream: EventStream) -> list[JobState]:
    states = []
    for event in stream:
        if event.job_id != job_id:
            continue
        assert event.class_name == "Echo"
        states.append(event.state)
        if event.state.is_final:
            return states
    raise AssertionError("the stream ended")


def test_events_stream_in_order(workspace: Workspace) -> None:
    """A job that finds a worker idle starts as it is stored (never queued); one that
    waits for a worker is queued first."""
    workspace.write_config({"daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    with client.events() as stream:
        at_once = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        assert _states_until_final(at_once, stream) == [
            JobState.RUNNING,
            JobState.SUCCEEDED,
        ]
        client.submit([JobSpec(class_name="Sleep", method="handle", params=[0.3])])
        waits = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        assert _states_until_final(waits, stream) == [
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        ]


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
    # Due with a worker free, it goes from scheduled straight to running.
    assert [event.state for event in seen] == [JobState.RUNNING, JobState.FAILED]
    assert client.get(other).state is JobState.SUCCEEDED
