"""Nodes on one PostgreSQL schema, when one of them fails: a cancel sent to one node kills
the attempt another runs; a node killed mid-run has its jobs finished by the others after
its lease; a node stopped past its lease gets no second success recorded, its late
outcome refused with a WARNING."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bgjobs.model import JobInfo, JobSpec, JobState, Outcome
from tests.pgcluster.conftest import MakePgCluster, node_name
from tests.support.cluster import Cluster, Node
from tests.support.procs import group_members, is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

LEASE_SECONDS = 2
RECLAIM_TIMEOUT = 30.0
"""The lease, a heartbeat's third of it, a retry and a claim; generous for a loaded host."""
KILLED_JOBS = 36
"""Enough for every node to be busy when one is killed."""
RECLAIM_SETTINGS: dict[str, Any] = {
    "allowed_jobs": {"Token": ["handle"], "Group": ["handle"]},
    # Reclaiming counts the lost attempt as interrupted: the retry rules give it another.
    "jobs": {"Token": {"retry_attempts": 2, "retry_delay_seconds": 0}},
    "daemon": {"lease_seconds": LEASE_SECONDS},
}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def node_of(cluster: Cluster, owner: str | None) -> Node:
    (node,) = (node for node in cluster.nodes.values() if node_name(node) == owner)
    return node


def running_on(cluster: Cluster, job_id: int) -> Node:
    """The node running the job, once its worker has taken the attempt up."""
    job = cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    runner = node_of(cluster, job.owner)
    wait_for(runner.lock_files, timeout=30, what=f"node {runner.name}'s worker to take it up")
    return runner


def test_a_cancel_sent_to_one_node_kills_the_job_running_on_another_within_a_second(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(RECLAIM_SETTINGS).start()
    pids = workspace.root / "group"
    spec = JobSpec(class_name="Group", method="handle", params=[str(pids)])
    job_id = cluster["a"].client().submit([spec]).ids[0]
    runner = running_on(cluster, job_id)
    other = next(node for node in cluster.nodes.values() if node is not runner)
    wait_for(pids.exists, timeout=30, what="the job's pids")
    pid, pgid, child = map(int, pids.read_text().split())
    assert group_members(pgid), "the job's process group is not there to be killed"

    cancelled = other.client().cancel(job_id)
    assert cancelled.state is JobState.CANCELLED, cancelled
    # The runner hears of it by NOTIFY (or its 50 ms poll) and kills the group at once.
    wait_for(lambda: not group_members(pgid), timeout=1.0, what="the job's process group to go")
    assert is_gone(pid) and is_gone(child)
    job = cluster.job(job_id)
    assert job.state is JobState.CANCELLED
    assert [attempt.node for attempt in job.history] == [node_name(runner)]


def test_a_killed_node_s_jobs_finish_on_the_others_after_its_lease(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(RECLAIM_SETTINGS).start()
    tokens = workspace.root / "tokens"
    specs = [
        JobSpec(class_name="Token", method="handle", params=[str(tokens), f"k{n}", 0.2])
        for n in range(KILLED_JOBS)
    ]
    ids = cluster["a"].client().submit(specs).ids
    victim = cluster["b"]
    victim_name = node_name(victim)

    def victim_runs() -> bool:
        with cluster.store() as store:
            return len(store.running(victim_name)) >= 1

    wait_for(victim_runs, timeout=30, what="node b to run some of the jobs")
    wait_for(victim.lock_files, timeout=30, what="node b's workers to take them up")
    victim.process.kill()

    jobs = [
        cluster.wait_for_job(
            job_id,
            lambda job: job.state.is_final,
            timeout=RECLAIM_TIMEOUT + 30,
            what="to end on a survivor",
        )
        for job_id in ids
    ]
    assert [job.state for job in jobs] == [JobState.SUCCEEDED] * len(ids)
    interrupted = [
        job for job in jobs if any(attempt.node == victim_name for attempt in job.history)
    ]
    assert interrupted, "no job was running on the killed node"
    for job in interrupted:
        assert [a.outcome for a in job.history] == [Outcome.INTERRUPTED, Outcome.SUCCEEDED]
        assert job.history[-1].node != victim_name
    survivors = [node for node in cluster.nodes.values() if node is not victim]
    assert any(f"reclaimed from node {victim_name}" in node.error_log() for node in survivors)
    assert set(lines(tokens)) >= {f"k{n}" for n in range(KILLED_JOBS)}
    # Each job has exactly one success recorded.
    assert all(sum(a.outcome is Outcome.SUCCEEDED for a in job.history) == 1 for job in jobs)


def rerun_elsewhere(cluster: Cluster, job_id: int, stopped: Node) -> JobInfo:
    return cluster.wait_for_job(
        job_id,
        lambda job: job.state is JobState.RUNNING and job.owner != node_name(stopped),
        timeout=RECLAIM_TIMEOUT,
        what="another node to run it again",
    )


def test_a_node_stopped_past_its_lease_records_no_second_success(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(RECLAIM_SETTINGS).start()
    tokens, gate = workspace.root / "tokens", workspace.root / "gate"
    spec = JobSpec(class_name="Token", method="handle", params=[str(tokens), "done", 0, str(gate)])
    job_id = cluster["a"].client().submit([spec]).ids[0]
    stopped = running_on(cluster, job_id)

    # Only the daemon stops: its worker runs on, and ends its attempt while it sleeps.
    with stopped.paused():
        rerun = rerun_elsewhere(cluster, job_id, stopped)
        gate.touch()
        cluster.wait_for_job(
            job_id, lambda job: job.state is JobState.SUCCEEDED, what="the survivor's success"
        )
        wait_for(lambda: len(lines(tokens)) == 2, timeout=30, what="both attempts' tokens")

    name = node_name(stopped)
    refusal = f"job {job_id}: attempt 1 ended (succeeded) after its node {name} lost"
    wait_for(lambda: refusal in stopped.error_log(), timeout=30, what="the late outcome's refusal")
    (line,) = [line for line in stopped.error_log().splitlines() if refusal in line]
    assert "WARNING" in line and "not recorded" in line, line

    job = cluster.job(job_id)
    assert job.state is JobState.SUCCEEDED
    assert [(a.node, a.outcome) for a in job.history] == [
        (name, Outcome.INTERRUPTED),
        (rerun.owner, Outcome.SUCCEEDED),
    ]
    # The stopped node found its lease gone, registered again and serves on.
    wait_for(stopped.process.answers, timeout=30, what="the stopped node to answer again")
    assert cluster.job(job_id).history == job.history
