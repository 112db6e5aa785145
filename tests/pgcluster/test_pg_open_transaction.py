"""An application's transaction that holds a job's idempotency key (its `enqueue_in` not
committed yet) never stalls a node: a submit of the same key through the daemon is tried
again, the loop free in between, until that transaction ends; then it finds the job (a
commit) or stores its own (a rollback)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest

from bgjobctl import enqueue_in
from bgjobctl.library import make_spec
from bgjobs.model import JobState
from tests.pgcluster.conftest import MakePgCluster
from tests.store.support import PG_DSN
from tests.support.cluster import Node
from tests.support.waiting import wait_for


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_a_key_held_by_an_open_transaction_does_not_stall_the_node(
    make_pg_cluster: MakePgCluster, ending: str
) -> None:
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    answers: list[list[int]] = []
    with psycopg.connect(PG_DSN) as app:
        app.execute("BEGIN")
        held = enqueue_in(app, "Echo", "handle", ["app"], key="held", config=str(node.config_path))
        same_key = _in_thread(lambda: answers.append(_submit(node, "daemon", key="held")))
        wait_for(
            lambda: "a submit waits for another transaction" in node.error_log(), what="the wait"
        )
        # The node goes on meanwhile: a submit is answered and its job runs (each call
        # fails after 10 s if the node's loop waits for the application's transaction).
        client = node.client(timeout=10)
        other = client.submit([make_spec("Echo", "handle", ["other"])]).ids[0]
        assert client.wait(other, timeout=10).state is JobState.SUCCEEDED
        assert same_key.is_alive(), "answered before the key's transaction ended"
        app.execute(ending.upper())
    same_key.join(30)
    assert not same_key.is_alive()
    (ids,) = answers
    final = cluster.wait_for_job(ids[0], lambda job: job.state.is_final, what="to run")
    assert final.state is JobState.SUCCEEDED
    if ending == "commit":
        assert ids == [held] and final.result == ["app"]
    else:
        assert ids != [held] and final.result == ["daemon"]
    assert sorted(job.params[0] for job in cluster.jobs()) == sorted(["other", final.result[0]])
    cluster.close()


def _submit(node: Node, param: str, *, key: str) -> list[int]:
    return node.client().submit([make_spec("Echo", "handle", [param], key=key)]).ids


def _in_thread(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread
