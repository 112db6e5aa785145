"""Progress on the dashboard: a running job's `bgjobs.progress` updates appear live, without
a reload, in the running jobs list and on the job's page."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver

from bgjobs.model import JobSpec
from tests.dashboard.support import (
    Dashboard,
    row_text,
    start_dashboard,
    text_of,
    wait_live,
    wait_until,
)
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

STEPS = 4


def _submit_steps(dashboard: Dashboard, gates: Path) -> int:
    client = dashboard.workspace.client()
    spec = JobSpec(class_name="Reporting", method="steps", params=[str(gates), STEPS])
    job_id = client.submit([spec]).ids[0]
    wait_for(lambda: client.get(job_id).progress is not None, what="the first update")
    return job_id


def _mark_page(driver: WebDriver) -> None:
    """A mark that a reload would wipe: the updates must come without one."""
    driver.execute_script("window.__progressMark = true")


def _not_reloaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.__progressMark === true"))


def test_progress_appears_live_in_the_list_and_on_the_job_page(
    workspace: Workspace, browser: WebDriver
) -> None:
    dashboard = start_dashboard(workspace, {"allowed_jobs": {"Reporting": ["steps"]}})
    dashboard.log_in(browser)
    gates = workspace.root / "gates"
    gates.mkdir()
    job_id = _submit_steps(dashboard, gates)

    browser.get(f"{dashboard.url}/dashboard/jobs")
    wait_live(browser)
    wait_until(browser, lambda d: "25% step 1 of 4" in row_text(d, "running", job_id))
    _mark_page(browser)
    (gates / "1").touch()
    wait_until(browser, lambda d: "50% step 2 of 4" in row_text(d, "running", job_id))
    assert _not_reloaded(browser)
    bar = f'[data-section="running"] tr[data-job="{job_id}"] progress'
    assert browser.execute_script(f"return document.querySelector('{bar}').value") == 0.5

    browser.get(f"{dashboard.url}/dashboard/jobs/{job_id}")
    wait_live(browser)
    assert text_of(browser, "#progress-text") == "50% step 2 of 4"
    _mark_page(browser)
    (gates / "2").touch()
    wait_until(browser, lambda d: text_of(d, "#progress-text") == "75% step 3 of 4")
    assert browser.execute_script("return document.getElementById('job-progress').value") == 0.75
    assert _not_reloaded(browser)

    (gates / "3").touch()
    wait_until(
        browser, lambda d: d.find_element("id", "detail").get_attribute("data-state") == "succeeded"
    )
    assert browser.execute_script("return document.getElementById('progress-box').hidden")
    assert _not_reloaded(browser)
