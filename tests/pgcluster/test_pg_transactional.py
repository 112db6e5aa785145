"""The transactional enqueue end to end: a job written by `enqueue_in` in an application's
own transaction runs on a node once committed (woken by the commit's notice, not a poll),
and never when the transaction rolls back."""

from __future__ import annotations

import psycopg
import pytest

from bgjobctl import enqueue_in
from bgjobs.model import JobState
from tests.pgcluster.conftest import MakePgCluster
from tests.store.support import PG_DSN


def test_a_committed_enqueue_runs_on_a_node_and_a_rolled_back_one_never_exists(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    with psycopg.connect(PG_DSN) as app:
        with pytest.raises(RuntimeError, match="order lost"), app.transaction():
            enqueue_in(app, "Echo", "handle", ["lost"], config=str(node.config_path))
            raise RuntimeError("order lost")
        with app.transaction():
            job_id = enqueue_in(app, "Echo", "handle", ["Book"], config=str(node.config_path))
    done = cluster.wait_for_job(
        job_id, lambda job: job.state.is_final, what="to run after the commit", timeout=30
    )
    assert done.state is JobState.SUCCEEDED and done.result == ["Book"]
    assert [job.params for job in cluster.jobs()] == [["Book"]]
    cluster.close()
