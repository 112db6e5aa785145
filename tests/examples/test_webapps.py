"""The example applications under their real servers enqueue through HTTP against a real
daemon, and read the result back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.shipped import use_shipped_config
from tests.support.webapps import post, serving
from tests.support.workspace import Workspace


def test_fastapi_app_under_uvicorn(workspace: Workspace) -> None:
    use_shipped_config(workspace)
    workspace.start_daemon()
    app = "examples.fastapi_app.app:app"
    with serving(workspace, "uvicorn", app, "--port", "{port}", "--workers", "1") as url:
        status, queued = post(f"{url}/lessons/Algebra")
        assert status == 200 and isinstance(queued["job_id"], int)
        status, done = post(f"{url}/lessons/Geometry?wait=20")
        assert status == 200, done
        assert done["result"]["title"] == "Geometry"
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: post(f"{url}/lessons/t{i}?wait=20"), range(40)))
    assert all(status == 200 for status, _ in answers)
    assert sorted(body["result"]["title"] for _, body in answers) == sorted(
        f"t{i}" for i in range(40)
    )
    assert workspace.client().wait(queued["job_id"], 20).state.value == "succeeded"


def test_flask_app_under_gunicorn_prefork(workspace: Workspace) -> None:
    use_shipped_config(workspace)
    workspace.start_daemon()
    settings = str(Path(__file__).with_name("gunicorn_prefork.py"))
    args = ("--workers", "4", "--preload", "-c", settings, "--bind", "127.0.0.1:{port}")
    app = "examples.flask_app.app:app"
    with serving(workspace, "gunicorn", *args, app) as url, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: post(f"{url}/lessons/f{i}?wait=20"), range(60)))
    assert all(status == 200 for status, _ in answers), answers
    assert sorted(body["result"]["title"] for _, body in answers) == sorted(
        f"f{i}" for i in range(60)
    )
    # Several forked workers served requests, each over a connection of its own.
    assert len({body["worker_pid"] for _, body in answers}) >= 2
    assert len({body["job_id"] for _, body in answers}) == 60
    client = workspace.client()
    [submitted_by_master] = client.list_jobs(search="from the master").jobs
    assert client.wait(submitted_by_master.id, 20).state.value == "succeeded"
