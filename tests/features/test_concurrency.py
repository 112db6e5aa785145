"""overlap = false, max_concurrency and unique."""

from __future__ import annotations

from pathlib import Path

from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def _intervals(path: Path) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        _, name, moment = line.split()
        spans.setdefault(name, []).append(float(moment))
    return {name: (times[0], times[1]) for name, times in spans.items()}


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_overlap_false_serialises_a_class_while_others_run_beside(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 3}, "jobs": {"Record": {"overlap": False}}})
    workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    other = workspace.root / "other"
    ids = client.submit(
        [
            JobSpec(class_name="Record", method="handle", params=[str(record), f"r{n}", 0.3])
            for n in range(3)
        ]
    ).ids
    beside = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[0.3, str(other)])]
    ).ids[0]
    for job_id in [*ids, beside]:
        assert client.wait(job_id, 20).state is JobState.SUCCEEDED
    spans = _intervals(record)
    assert _most_at_once(list(spans.values())) == 1  # never two Records at once
    first_start = min(start for start, _ in spans.values())
    sleep_job = client.get(beside)
    assert sleep_job.started_at is not None
    # The other class did not wait for the Record queue to drain.
    assert sleep_job.started_at.timestamp() < first_start + 0.3
    assert [client.get(i).state for i in ids] == [JobState.SUCCEEDED] * 3


def test_max_concurrency(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 4}, "jobs": {"Record": {"max_concurrency": 2}}})
    workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    ids = client.submit(
        [
            JobSpec(class_name="Record", method="handle", params=[str(record), f"r{n}", 0.3])
            for n in range(6)
        ]
    ).ids
    for job_id in ids:
        assert client.wait(job_id, 30).state is JobState.SUCCEEDED
    assert _most_at_once(list(_intervals(record).values())) == 2


def test_unique_returns_the_existing_id(workspace: Workspace) -> None:
    workspace.write_config({"jobs": {"Echo": {"unique": True}}})
    workspace.start_daemon()
    client = workspace.client()
    first = client.submit([JobSpec(class_name="Echo", method="handle", params=["a"], delay=1)])
    again = client.submit([JobSpec(class_name="Echo", method="handle", params=["a"], delay=1)])
    other = client.submit([JobSpec(class_name="Echo", method="handle", params=["b"], delay=1)])
    assert again.ids == first.ids and again.existing == [True]
    assert other.ids != first.ids and other.existing == [False]
    done = workspace.bgjobctl("--json", "submit", "Echo", "handle", "a")
    assert f'"id":{first.ids[0]}' in done.stdout and '"existing":true' in done.stdout
    assert client.wait(first.ids[0], 10).state is JobState.SUCCEEDED
    after = client.submit([JobSpec(class_name="Echo", method="handle", params=["a"])])
    assert after.ids != first.ids  # the first one is finished: a new job
