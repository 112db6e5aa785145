"""Warm workers forked from a template process that imported the jobs package once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from bgjobctl.client import Client
from bgjobd.containment import children, is_zombie
from bgjobd.worker.template import NAME
from bgjobs.model import JobSpec, JobState
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

ALLOWED = {"Imported": ["handle"], "Sleep": ["handle"], "Echo": ["handle"]}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _templates(daemon: int, client: Client) -> set[int]:
    """The daemon's children named as templates (not their workers, forked with the same
    command line), none of them a worker."""
    workers = {worker.pid for worker in client.stats().workers}
    found = set()
    for pid in children(daemon):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name == NAME and not is_zombie(pid):
            found.add(pid)
    assert not found & workers
    return found


def _imported(client: Client) -> dict[str, Any]:
    job_id = client.submit([JobSpec(class_name="Imported", method="handle")]).ids[0]
    job = client.wait(job_id, 15)
    assert job.state is JobState.SUCCEEDED, job.error
    assert isinstance(job.result, dict)
    return job.result


def _run_on_each_worker(client: Client, count: int) -> list[dict[str, Any]]:
    """`Imported` on `count` workers at once (each job holds its worker a moment)."""
    specs = [JobSpec(class_name="Sleep", method="handle", params=[0.5]) for _ in range(count)]
    sleepers = client.submit(specs).ids
    results = [_imported(client) for _ in range(count)]
    for job_id in sleepers:
        client.wait(job_id, 15)
    return results


def test_warm_workers_are_forked_from_one_template_and_are_the_daemons_children(
    workspace: Workspace,
) -> None:
    workspace.write_config({"allowed_jobs": ALLOWED})
    daemon = workspace.start_daemon()
    client = workspace.client()
    wait_for(lambda: len(client.stats().workers) == 2, what="two workers")
    (template,) = wait_for(lambda: _templates(daemon.pid, client), what="the template")
    workers = {worker.pid for worker in client.stats().workers}
    assert {_parent(pid) for pid in workers} == {daemon.pid}
    assert _parent(template) == daemon.pid
    results = [_imported(client) for _ in range(4)]
    assert {result["imported_by"] for result in results} == {template}
    assert {result["pid"] for result in results} <= workers
    # Each forked child draws its own random numbers (Python re-seeds after a fork).
    assert len({result["random"] for result in results}) == len(results)


def test_spawned_workers_import_the_jobs_package_themselves(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": ALLOWED, "daemon": {"worker_start": "spawn"}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    result = _imported(client)
    assert result["imported_by"] == result["pid"]
    assert _templates(daemon.pid, client) == set()


def test_recycled_workers_are_forked_too(workspace: Workspace) -> None:
    workspace.write_config(
        {"allowed_jobs": ALLOWED, "daemon": {"workers": 1, "max_jobs_per_worker": 1}}
    )
    daemon = workspace.start_daemon()
    client = workspace.client()
    (template,) = wait_for(lambda: _templates(daemon.pid, client), what="the template")
    results = [_imported(client) for _ in range(3)]
    assert len({result["pid"] for result in results}) == 3
    assert {result["imported_by"] for result in results} == {template}


def test_a_reload_starts_a_new_template_and_workers_see_the_changed_jobs_module(
    workspace: Workspace,
) -> None:
    package = workspace.root / "versioned"
    package.mkdir()
    module = package / "__init__.py"
    module.write_text("class Version:\n    def handle(self):\n        return 1\n")
    settings = {"jobs_package": "versioned", "allowed_jobs": {"Version": ["handle"]}}
    workspace.write_config(settings)
    daemon = workspace.start_daemon()
    client = workspace.client()
    (old_template,) = wait_for(lambda: _templates(daemon.pid, client), what="the template")
    job_id = client.submit([JobSpec(class_name="Version", method="handle")]).ids[0]
    assert client.wait(job_id, 15).result == 1
    old_workers = {worker.pid for worker in client.stats().workers}

    module.write_text("class Version:\n    def handle(self):\n        return 'second'\n")
    daemon.signal(signal.SIGHUP)
    wait_for(
        lambda: (
            not {worker.pid for worker in client.stats().workers} & old_workers
            and len(client.stats().workers) == 2
        ),
        what="new workers",
    )
    (new_template,) = wait_for(
        lambda: _templates(daemon.pid, client) - {old_template}, what="a new template"
    )
    wait_for(lambda: is_gone(old_template), what="the old template to exit")
    job_id = client.submit([JobSpec(class_name="Version", method="handle")]).ids[0]
    assert client.wait(job_id, 15).result == "second"
    assert new_template != old_template


def test_a_killed_template_is_replaced_and_jobs_keep_running(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": ALLOWED})
    daemon = workspace.start_daemon()
    client = workspace.client()
    (template,) = wait_for(lambda: _templates(daemon.pid, client), what="the template")
    busy = client.submit([JobSpec(class_name="Sleep", method="handle", params=[1])]).ids[0]
    wait_for(lambda: client.get(busy).state is JobState.RUNNING, what="the job to start")
    os.kill(template, signal.SIGKILL)
    (replacement,) = wait_for(
        lambda: _templates(daemon.pid, client) - {template}, what="a new template"
    )
    assert client.wait(busy, 15).state is JobState.SUCCEEDED
    assert f"the template process {template} killed by signal 9; starting another" in (
        daemon.stderr
    )
    # The workers forked by the dead template keep working; their replacements come from
    # the new one.
    assert _imported(client)["imported_by"] == template
    for worker in client.stats().workers:
        os.kill(worker.pid, signal.SIGKILL)
    wait_for(
        lambda: (
            {result["imported_by"] for result in _run_on_each_worker(client, 2)} == {replacement}
        ),
        what="workers forked from the new template",
    )


def test_nothing_is_left_behind_when_the_daemon_stops(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": ALLOWED})
    daemon = workspace.start_daemon()
    client = workspace.client()
    (template,) = wait_for(lambda: _templates(daemon.pid, client), what="the template")
    workers = [worker.pid for worker in client.stats().workers]
    client.close()
    assert daemon.stop() == 0
    for pid in (template, *workers):
        assert is_gone(pid), pid
