"""A batch on a job's page and in `/api/jobs/<id>`: its callback, its counts, every job."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from bgjobs.model import ChainLink, JobSpec
from tests.dashboard.support import Dashboard, start_dashboard, text_of, wait_live, wait_until
from tests.support.workspace import Workspace

ALLOWED = {"allowed_jobs": {"Square": ["handle"], "BatchCallback": ["handle"]}}


def submit_batch(dashboard: Dashboard, jobs: list[ChainLink]) -> int:
    token = dashboard.workspace.root / "token"
    client = dashboard.workspace.client()
    spec = JobSpec(class_name="BatchCallback", method="handle", params=[str(token)], batch=jobs)
    return client.submit([spec]).ids[0]


def api(dashboard: Dashboard, path: str) -> Any:
    answer = dashboard.http().get(path)
    assert answer.status == 200, answer.text
    return answer.json()


def test_the_api_gives_a_job_its_batch(workspace: Workspace) -> None:
    dashboard = start_dashboard(workspace, ALLOWED)
    gate = workspace.root / "gate"
    jobs = [ChainLink("Square", "handle", [n, str(gate)]) for n in range(3)]
    batch_id = submit_batch(dashboard, jobs)
    waiting = api(dashboard, f"/api/jobs/{batch_id}")
    assert waiting["record"]["batch_id"] == batch_id
    batch = waiting["batch"]
    assert batch["is_callback"] is True and batch["size"] == 3 and batch["ended"] == 0
    assert [member["id"] for member in batch["members"]] == [batch_id + n for n in (1, 2, 3)]
    assert ["Batch", f"#{batch_id}: this job is its callback"] in waiting["fields"]

    gate.touch()
    dashboard.wait_state(batch_id, "succeeded")
    done = api(dashboard, f"/api/jobs/{batch_id}")
    assert done["batch"]["counts_text"] == "3 jobs: 3 succeeded"
    assert done["record"]["result"] == 0 + 1 + 4
    member = api(dashboard, f"/api/jobs/{batch_id + 2}")
    assert member["batch"]["is_callback"] is False
    assert member["batch"]["callback_id"] == batch_id
    assert ["Batch", f"a job of batch #{batch_id}"] in member["fields"]
    alone = api(dashboard, f"/api/jobs/{dashboard.submit('Echo', 'x')}")
    assert alone["batch"] is None
    chips = {job["id"]: job["batch_text"] for job in api(dashboard, "/api/jobs")["jobs"]}
    assert chips[batch_id] == f"#{batch_id} callback"
    assert chips[batch_id + 1] == f"#{batch_id}"
    assert chips[alone["job"]["id"]] == ""


def test_the_job_page_shows_the_batch_and_follows_it_live(
    workspace: Workspace, browser: WebDriver
) -> None:
    dashboard = start_dashboard(workspace, ALLOWED)
    dashboard.log_in(browser)
    gate = workspace.root / "gate"
    jobs = [ChainLink("Square", "handle", [n, str(gate)]) for n in range(4)]
    batch_id = submit_batch(dashboard, jobs)
    browser.get(f"{dashboard.url}/dashboard/jobs/{batch_id}")
    wait_live(browser)
    items = browser.find_elements(By.CSS_SELECTOR, "#batch li")
    assert [item.text.split()[0] for item in items] == [f"#{batch_id + n}" for n in (1, 2, 3, 4)]
    assert text_of(browser, "#job-state") == "waiting"
    browser.execute_script("window.__sameDocument = true")

    gate.touch()  # the jobs end, then the callback runs: the page follows without a reload
    wait_until(browser, lambda d: text_of(d, "#job-state") == "succeeded", timeout=30)
    wait_until(browser, lambda d: text_of(d, "#batch-counts") == "4 jobs: 4 succeeded")
    assert all(
        "succeeded" in item.text for item in browser.find_elements(By.CSS_SELECTOR, "#batch li")
    )
    assert browser.execute_script("return window.__sameDocument") is True
    browser.get(f"{dashboard.url}/dashboard/jobs")
    wait_live(browser)
    chips = [chip.text for chip in browser.find_elements(By.CSS_SELECTOR, "td.c-job .chip")]
    assert chips.count(f"batch #{batch_id}") == 4 and f"batch #{batch_id} callback" in chips
