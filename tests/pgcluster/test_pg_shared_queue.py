"""Three daemons (standing in for three hosts: their own storage, sockets and node names)
on one PostgreSQL schema share its queue: 5,000 jobs each run exactly once, 1,000 jobs due
at one instant each fire once across the nodes, and any node's `bgjobctl` and dashboard
show the whole cluster."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from bgjobs.model import JobSpec, JobState
from tests.dashboard.support import free_port
from tests.pgcluster.conftest import MakePgCluster, node_name
from tests.store.support import PG_DSN
from tests.support.cluster import Cluster, Node
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

JOBS = 5000
DUE_JOBS = 1000
BATCH = 250
TOKENS = {"allowed_jobs": {"Token": ["handle"]}}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def submit_tokens(
    node: Node, tokens: Path, numbers: range, *, prefix: str = "t", at: datetime | None = None
) -> list[int]:
    """Jobs writing `<prefix><n>` for every n, in batches of BATCH jobs per request."""
    client = node.client()
    ids: list[int] = []
    for first in range(numbers.start, numbers.stop, BATCH):
        specs = [
            JobSpec(
                class_name="Token",
                method="handle",
                params=[str(tokens), f"{prefix}{n}"],
                run_at=at,
            )
            for n in range(first, min(first + BATCH, numbers.stop))
        ]
        ids += client.submit(specs).ids
    return ids


def spread(
    cluster: Cluster, tokens: Path, count: int, **kwargs: str | datetime | None
) -> list[int]:
    """`count` token jobs submitted through every node at once, a share each."""
    nodes = list(cluster.nodes.values())
    share = -(-count // len(nodes))
    with ThreadPoolExecutor(len(nodes)) as pool:
        futures = [
            pool.submit(
                submit_tokens,
                node,
                tokens,
                range(n * share, min((n + 1) * share, count)),
                **kwargs,  # type: ignore[arg-type]
            )
            for n, node in enumerate(nodes)
        ]
        return [job_id for future in futures for job_id in future.result()]


def succeeded(node: Node) -> int:
    return node.client().list_jobs(states=[JobState.SUCCEEDED], limit=1).total


def test_three_nodes_run_5000_jobs_each_exactly_once_and_show_the_whole_cluster(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    port = free_port()
    dashboard = {
        "dashboard": {"enabled": True, "listen": f"127.0.0.1:{port}", "public_metrics": True}
    }
    cluster = make_pg_cluster(TOKENS, per_node={"c": dashboard}).start()
    tokens = workspace.root / "tokens"
    submitted = spread(cluster, tokens, JOBS)
    assert len(set(submitted)) == JOBS

    wait_for(lambda: len(lines(tokens)) >= JOBS, timeout=150, what="every token")
    wait_for(lambda: succeeded(cluster["a"]) == JOBS, timeout=30, what="every job succeeded")
    written = lines(tokens)
    assert len(written) == JOBS, "a job ran more than once"
    assert set(written) == {f"t{n}" for n in range(JOBS)}
    jobs = cluster.jobs()
    assert len(jobs) == JOBS
    assert all(job.state is JobState.SUCCEEDED and job.attempts == 1 for job in jobs)
    # Every node took a share of the work.
    assert {job.owner for job in jobs} == {node_name(node) for node in cluster.nodes.values()}

    # Any node's bgjobctl shows the whole cluster (through its own socket).
    for node in cluster.nodes.values():
        listed = node.bgjobctl("list", "--json", "--limit", "1")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["total"] == JOBS
    node = cluster["b"]
    shown = node.bgjobctl("nodes", "--json")
    assert shown.returncode == 0, shown.stderr
    names = [entry["name"] for entry in json.loads(shown.stdout)["nodes"]]
    assert names == sorted(node_name(n) for n in cluster.nodes.values())
    one = jobs[0]
    detail = node.bgjobctl("show", str(one.id), "--json")
    assert detail.returncode == 0, detail.stderr
    assert json.loads(detail.stdout)["owner"] == one.owner
    stats = node.bgjobctl("stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert str(JOBS) in stats.stdout
    # The dashboard of a node answers with the whole queue's counts.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    counts = {s.labels.get("state"): s.value for s in families["bgjobs_jobs"].samples}
    assert counts["succeeded"] == JOBS, counts


def test_1000_jobs_due_at_one_instant_each_fire_once_across_the_nodes(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(TOKENS).start()
    tokens = workspace.root / "due"
    # One instant for all, a moment after every node has stored its share.
    due = datetime.now(UTC) + timedelta(seconds=2)
    submitted = spread(cluster, tokens, DUE_JOBS, prefix="d", at=due)
    assert len(set(submitted)) == DUE_JOBS
    wait_for(lambda: len(lines(tokens)) >= DUE_JOBS, timeout=60, what="every due job")
    wait_for(lambda: succeeded(cluster["a"]) == DUE_JOBS, timeout=30, what="all recorded")
    written = lines(tokens)
    assert len(written) == DUE_JOBS, "a due job fired more than once"
    assert set(written) == {f"d{n}" for n in range(DUE_JOBS)}
    jobs = cluster.jobs()
    assert all(job.attempts == 1 for job in jobs)
    assert len({job.run_at for job in jobs}) == 1, "not all due at one instant"
    assert len({job.owner for job in jobs}) >= 2, "the due jobs were not shared"


def test_run_job_runs_its_job_in_the_postgresql_store_beside_the_nodes(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(TOKENS, names=("a",)).start()
    tokens = workspace.root / "tokens"
    ran = workspace.run_job("Token", "handle", f"{tokens},r0")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert lines(tokens) == ["r0"]
    (job,) = cluster.jobs()
    assert job.state is JobState.SUCCEEDED
    assert job.owner != node_name(cluster["a"])  # the runner's own
    shown = cluster["a"].bgjobctl("show", str(job.id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "succeeded"


def _commits() -> int:
    """Transactions committed in the test database so far (every session's, the server's
    statistics: up to a second late)."""
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        row = db.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_idle_nodes_stay_quiet_once_their_jobs_are_done(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    """Nodes with idle workers learn of each other's commits from pushed notices; a claim
    that finds nothing must not itself be news to the others, or two idle nodes would wake
    each other for ever (each empty claim a notice, answered by an empty claim)."""
    cluster = make_pg_cluster(TOKENS, names=("a", "b"))
    cluster.start()
    tokens = workspace.root / "tokens"
    ids = submit_tokens(cluster["a"], tokens, range(6))
    for job_id in ids:
        cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to run")
    before = _commits()
    time.sleep(4)  # a window to count in: two quiet nodes commit a few times a second at most
    during = _commits() - before
    assert during < 100, f"{during} commits in 4 s between two idle nodes"
    cluster.close()
