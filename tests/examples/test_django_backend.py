"""Django's Tasks framework with bgjobs as its backend: a real Django project (settings, a
view that enqueues on commit, a task touching the ORM on SQLite) served by gunicorn, the
tasks run by a real daemon."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from bgjobs.model import JobSpec
from tests.support.waiting import wait_for
from tests.support.webapps import get, post, serving
from tests.support.workspace import REPO, Workspace

PROJECT = REPO / "tests" / "django_project"


@pytest.fixture
def django_workspace(workspace: Workspace) -> Workspace:
    for package in ("shopsite", "shop"):
        (workspace.root / package).symlink_to(PROJECT / package, target_is_directory=True)
    workspace.env["DJANGO_SETTINGS_MODULE"] = "shopsite.settings"
    workspace.env["SHOP_DB"] = str(workspace.root / "shop.sqlite3")
    workspace.write_config(
        {
            "jobs_package": "bgjobctl.django_backend",
            "allowed_jobs": {"DjangoTask": ["run"]},
            "retry_attempts": 0,
        }
    )
    migrated = workspace.run("-m", "django", "migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    workspace.start_daemon()
    return workspace


def django(workspace: Workspace, code: str) -> dict[str, object]:
    """Run `code` with the project set up; it leaves its answer in `out`."""
    script = "import django, json\ndjango.setup()\nout = {}\n" + textwrap.dedent(code)
    script += "\nprint(json.dumps(out))\n"
    done = workspace.run("-c", script, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_view_enqueues_on_commit_and_the_task_uses_the_orm(
    django_workspace: Workspace,
) -> None:
    workspace = django_workspace
    wsgi = ("--workers", "2", "--bind", "127.0.0.1:{port}", "shopsite.wsgi:application")
    with serving(workspace, "gunicorn", *wsgi, cwd=workspace.root) as url:
        status, created = post(f"{url}/orders/?title=Book")
        assert status == 200, created

        def finished() -> dict[str, object]:
            answer = get(f"{url}/results/{created['result_id']}/")[1]
            return answer if answer["status"] == "SUCCESSFUL" else {}

        answer = wait_for(finished, timeout=30, what="the task to succeed")
        assert answer["return_value"] == {"order": created["order"], "title": "Book"}
        assert answer["attempts"] == 1
        assert get(f"{url}/orders/{created['order']}/")[1]["processed"] is True
        # A rolled-back transaction enqueues nothing.
        status, refused = post(f"{url}/orders/?title=Lost&fail=1")
        assert status == 409, refused
    jobs = workspace.client().list_jobs().jobs
    assert len(jobs) == 1 and "Lost" not in json.dumps([job.params for job in jobs])


def test_the_backend_behaves_as_django_specifies(django_workspace: Workspace) -> None:
    workspace = django_workspace
    out = django(
        workspace,
        """
        from datetime import timedelta
        from django.utils import timezone
        try:
            from django.tasks.exceptions import InvalidTask as InvalidTaskError
            from django.tasks.exceptions import TaskResultDoesNotExist
        except ImportError:
            from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
        from shop.models import Order
        from shop.tasks import process_order, refuse, shout

        order = Order.objects.create(title="Pen")
        result = process_order.enqueue(order.id)
        out["status"] = str(result.status)
        out["id"] = result.id
        later = process_order.using(run_after=timezone.now() + timedelta(seconds=60))
        out["later"] = later.enqueue(order.id).id
        out["failing"] = refuse.enqueue("no stock").id
        out["async"] = shout.enqueue("quiet").id
        try:
            process_order.get_result("999999")
        except TaskResultDoesNotExist:
            out["missing"] = "TaskResultDoesNotExist"
        try:
            process_order.using(priority=101)
        except InvalidTaskError:
            out["bad_priority"] = "InvalidTaskError"
        """,
    )
    assert out["status"] == "READY"
    assert out["missing"] == "TaskResultDoesNotExist"
    assert out["bad_priority"] == "InvalidTaskError"
    client = workspace.client()
    assert client.wait(int(str(out["id"])), 30).state.value == "succeeded"
    assert client.get(int(str(out["id"]))).priority.value == "high"  # priority=10
    assert client.get(int(str(out["async"]))).priority.value == "low"  # priority=-5
    assert client.wait(int(str(out["async"])), 30).result == "QUIET"
    later = client.get(int(str(out["later"])))
    assert later.state.value == "scheduled"
    assert later.run_at.timestamp() > later.created_at.timestamp() + 50
    assert client.wait(int(str(out["failing"])), 30).state.value == "failed"
    read_back = django(
        workspace,
        f"""
        from shop.tasks import process_order, refuse
        done = process_order.get_result("{out["id"]}")
        out["status"] = str(done.status)
        out["value"] = done.return_value
        failed = refuse.get_result("{out["failing"]}")
        out["failed"] = str(failed.status)
        out["error"] = failed.errors[0].exception_class_path
        out["error_class"] = failed.errors[0].exception_class.__name__
        out["traceback"] = failed.errors[0].traceback
        """,
    )
    assert read_back["status"] == "SUCCESSFUL"
    assert read_back["value"] == {"order": 1, "title": "Pen"}
    assert read_back["failed"] == "FAILED"
    assert read_back["error"] == "builtins.ValueError"
    assert read_back["error_class"] == "ValueError"
    assert "no stock" in str(read_back["traceback"])


def test_tasks_outside_the_backends_list_never_run(django_workspace: Workspace) -> None:
    workspace = django_workspace
    # A crafted job naming something that is not an allowed task fails without importing it.
    marker = workspace.root / "imported"
    (workspace.root / "sneaky.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    handle = workspace.client().submit([_spec(["shopsite.settings", "sneaky.anything", [], {}])])
    job = workspace.client().wait(handle.ids[0], 30)
    assert job.state.value == "failed"
    assert job.error is not None and job.error.type == "PermissionError"
    assert not Path(marker).exists()


def _spec(params: list[object]) -> JobSpec:
    return JobSpec(class_name="DjangoTask", method="run", params=params)
