"""Rate limits and `limit_by` across two daemons on one store: a class at "5/s" never
starts more than five jobs within any one second, whichever node starts them, and all of
them run; with `limit_by`, one customer's jobs never overlap while two customers' run side
by side."""

from __future__ import annotations

from pathlib import Path

from bgjobs.model import JobSpec, JobState
from tests.cluster.conftest import MakeCluster
from tests.support.cluster import Node
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

RATED_JOBS = 50
ROUNDING = 2e-6
"""Start times come back as datetimes (whole microseconds)."""


def _submit(node: Node, specs: list[JobSpec]) -> list[int]:
    return node.client().submit(specs).ids


def _intervals(path: Path) -> dict[str, list[float]]:
    """value -> [start, end] as the `Record` jobs wrote them."""
    spans: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        _edge, value, at = line.split()
        spans.setdefault(value, []).append(float(at))
    return spans


def _overlap(first: list[float], second: list[float]) -> bool:
    return first[0] < second[1] and second[0] < first[1]


def test_a_rate_of_5_per_second_holds_across_two_nodes(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(
        {"daemon": {"workers": 4}, "jobs": {"Record": {"rate_limit": "5/s"}}}
    ).start()
    out = workspace.root / "starts"
    specs = [
        JobSpec(class_name="Record", method="handle", params=[str(out), f"j{n}"])
        for n in range(RATED_JOBS)
    ]
    ids = _submit(cluster["a"], specs[::2]) + _submit(cluster["b"], specs[1::2])

    def all_ran() -> bool:
        return all(job.state is JobState.SUCCEEDED for job in cluster.jobs("Record"))

    wait_for(all_ran, timeout=60, what=f"{RATED_JOBS} rate-limited jobs ran")
    jobs = cluster.jobs("Record")
    assert sorted(job.id for job in jobs) == sorted(ids)
    assert len(_intervals(out)) == RATED_JOBS
    # The starts as the store recorded them (the claims it counted): within any second,
    # five at most. Both nodes started some.
    starts = sorted(job.started_at.timestamp() for job in jobs if job.started_at is not None)
    most = max(
        sum(1 for other in starts[: n + 1] if other > start - 1.0 + ROUNDING)
        for n, start in enumerate(starts)
    )
    assert most == 5
    assert {job.owner for job in jobs} == {"a", "b"}


def test_limit_by_keeps_one_customers_jobs_apart_and_lets_two_customers_run_together(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(
        {
            "daemon": {"workers": 3},
            "jobs": {"Record": {"max_concurrency": 1, "limit_by": 0}},
        }
    ).start()
    files = {customer: workspace.root / f"customer-{customer}" for customer in "xy"}
    specs = [
        JobSpec(
            class_name="Record",
            method="handle",
            params=[str(files[customer]), f"{customer}{n}", 0.3],
        )
        for n in range(4)
        for customer in "xy"
    ]
    _submit(cluster["a"], specs[:4])
    _submit(cluster["b"], specs[4:])

    def all_ran() -> bool:
        jobs = cluster.jobs("Record")
        return len(jobs) == 8 and all(job.state is JobState.SUCCEEDED for job in jobs)

    wait_for(all_ran, timeout=60, what="both customers' jobs ran")
    spans = {customer: list(_intervals(path).values()) for customer, path in files.items()}
    assert [len(spans[customer]) for customer in "xy"] == [4, 4]
    for customer in "xy":
        own = spans[customer]
        clashes = [
            (first, second)
            for n, first in enumerate(own)
            for second in own[n + 1 :]
            if _overlap(first, second)
        ]
        assert not clashes, f"customer {customer}'s jobs overlapped: {clashes}"
    assert any(_overlap(x, y) for x in spans["x"] for y in spans["y"]), (
        "the two customers' jobs never ran side by side"
    )
