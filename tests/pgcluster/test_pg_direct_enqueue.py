"""Direct enqueue (`[store] enqueue = "direct"`, PostgreSQL's default): `run_background_job`
stores the job in the store itself, with no daemon in the way, and a node runs it once it
learns of it from the database; whatever the store cannot settle (a refusal, a database
that does not answer) goes through the daemon as before; after a fork the child makes a
connection of its own and leaves the parent's alone."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bgjobctl import run_background_job
from bgjobctl.library import close_clients
from bgjobs.errors import DaemonUnreachable, JobFailed, RefusedError
from bgjobs.model import JobState
from tests.pgcluster.conftest import MakePgCluster
from tests.support.cluster import Node
from tests.support.waiting import wait_for
from tests.support.workspace import merged


@pytest.fixture(autouse=True)
def _closed_clients() -> Iterator[None]:
    """The library's connections (to the daemons and the database) closed after each test."""
    yield
    close_clients()


def _submit(config: Path, *params: Any, **options: Any) -> int:
    """A job submitted with `fallback="error"`: no spool or spawned runner can take it."""
    handle = run_background_job("Echo", "handle", list(params), config=str(config), **options)
    assert handle.id is not None
    return handle.id


def _config_beside(node: Node, name: str, store: dict[str, Any]) -> Path:
    """A client's configuration: the node's, with these `[store]` keys."""
    path = node.config_path.with_name(name)
    path.write_bytes(tomli_w.dumps(merged({"store": store}, node.settings)).encode())
    return path


def test_the_library_stores_the_job_itself_and_a_node_runs_it_once_up(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()  # its first start makes the store's tables
    node.process.stop()
    # No daemon answers, and fallback="error" would raise if the socket were tried.
    alone = _submit(node.config_path, "direct", fallback="error")
    chain = run_background_job(
        "Echo",
        "handle",
        ["first"],
        then=[("Echo", "handle", ["second"])],
        config=str(node.config_path),
        fallback="error",
    )
    again = _submit(node.config_path, "not twice", key="same-key", fallback="error")
    assert _submit(node.config_path, "not twice", key="same-key", fallback="error") == again
    assert cluster.job(alone).state is JobState.QUEUED
    assert not list(node.storage.glob("spool/*")), "a direct submit is never spooled"
    node.start()
    assert chain.id is not None and chain.last_id is not None
    for job_id in (alone, chain.last_id, again):
        done = cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to run")
        assert done.state is JobState.SUCCEEDED
    assert cluster.job(alone).result == ["direct"]
    assert cluster.job(chain.last_id).result == [["first"], "second"]
    assert len(cluster.jobs()) == 4
    cluster.close()


def test_a_delayed_job_stored_directly_runs_when_due(make_pg_cluster: MakePgCluster) -> None:
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    job_id = _submit(node.config_path, "later", delay=1.5, fallback="error")
    assert cluster.job(job_id).state is JobState.SCHEDULED
    done = cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to run when due")
    assert done.state is JobState.SUCCEEDED
    assert done.started_at is not None and done.run_at is not None
    assert done.started_at >= done.run_at
    cluster.close()


def test_a_host_with_no_daemon_submits_and_waits_through_the_store(
    make_pg_cluster: MakePgCluster,
) -> None:
    """The client's configuration names a socket nobody listens on (a web host that runs no
    daemon); the node elsewhere runs the jobs, and the handles learn their ends from the
    store."""
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    client = node.config_path.with_name("web-host.toml")
    settings = merged({"daemon": {"socket": str(node.socket_path) + ".none"}}, node.settings)
    client.write_bytes(tomli_w.dumps(settings).encode())
    handle = run_background_job(
        "Echo", "handle", ["from the web"], config=str(client), fallback="error"
    )
    assert handle.wait(timeout=30) == ["from the web"]
    assert handle.job().state is JobState.SUCCEEDED
    failing = run_background_job("Fail", "handle", config=str(client), fallback="error")
    with pytest.raises(JobFailed):
        failing.wait(timeout=30)
    assert not list(node.storage.glob("spool/*"))
    cluster.close()


def test_a_node_announces_a_job_stored_directly_to_its_watchers(
    make_pg_cluster: MakePgCluster,
) -> None:
    """A delayed job stored by the library reaches a node's live views (the dashboard, a
    client's subscription) when the node hears of it, not only when it runs."""
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    seen: list[int] = []
    stream = node.client().events()

    def listen() -> None:
        with contextlib.suppress(Exception):  # the stream closed at the end
            seen.extend(event.job_id for event in stream)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        job_id = _submit(node.config_path, "in an hour", delay=3600, fallback="error")
        wait_for(lambda: job_id in seen, timeout=15, what="the node to announce the job")
    finally:
        node.process.stop()  # ends the stream: its reader returns
        listener.join(10)
        stream.close()
    assert cluster.job(job_id).state is JobState.SCHEDULED
    cluster.close()


def test_what_the_store_cannot_settle_goes_through_the_daemon(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    # A refusal: the daemon refuses it too, and logs it as SECURITY.
    with pytest.raises(RefusedError):
        run_background_job("NotAllowed", "handle", config=str(node.config_path), fallback="error")
    assert "SECURITY" in node.error_log() and "NotAllowed::handle" in node.error_log()
    # A database this client cannot reach (the node can): the daemon stores the job.
    unreachable = _config_beside(
        node, "client-unreachable.toml", {"dsn": "postgresql://postgres@127.0.0.1:1/test"}
    )
    through_daemon = _submit(unreachable, "via the node", fallback="error")
    done = cluster.wait_for_job(through_daemon, lambda job: job.state.is_final, what="to run")
    assert done.state is JobState.SUCCEEDED and done.result == ["via the node"]
    # `enqueue = "daemon"`: the socket, even though the database answers.
    by_socket = _config_beside(node, "client-socket.toml", {"enqueue": "daemon"})
    node.process.stop()
    with pytest.raises(DaemonUnreachable):
        _submit(by_socket, "nobody", fallback="error")
    assert len(cluster.jobs()) == 1
    cluster.close()


def test_a_forked_child_submits_on_its_own_connection(make_pg_cluster: MakePgCluster) -> None:
    """No daemon answers throughout (fallback="error"): each submit is a direct one."""
    cluster = make_pg_cluster(names=("a",))
    node = cluster["a"]
    node.start()
    node.process.stop()
    before = _submit(node.config_path, "parent before", fallback="error")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's exit code tells
        code = 1
        try:
            os.close(read_end)
            job_id = _submit(node.config_path, "child", fallback="error")
            os.write(write_end, str(job_id).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        child_job = int(answer.read() or "0")
    assert os.waitpid(child, 0)[1] == 0
    # The child left the parent's connection alone: the parent's next submit goes through it.
    after = _submit(node.config_path, "parent after", fallback="error")
    node.start()
    for job_id, said in ((before, "parent before"), (child_job, "child"), (after, "parent after")):
        done = cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to run")
        assert done.state is JobState.SUCCEEDED and done.result == [said]
    cluster.close()
