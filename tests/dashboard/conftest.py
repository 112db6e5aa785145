from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.dashboard.support import Dashboard, open_chromium, require_chromium, start_dashboard
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


@pytest.fixture
def dashboard(workspace: Workspace) -> Dashboard:
    return start_dashboard(workspace)


@pytest.fixture
def browser(
    workspace: Workspace, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium per test, quit (with its driver) when the test ends;
    logged in to the test's `dashboard` when it has one."""
    require_chromium()
    driver = open_chromium(tmp_path / "chromium-profile", workspace.marker)
    try:
        if "dashboard" in request.fixturenames:
            dashboard: Dashboard = request.getfixturevalue("dashboard")
            dashboard.log_in(driver)
        yield driver
    finally:
        process = driver.service.process
        driver.quit()
        if process is not None:
            wait_for(lambda: is_gone(process.pid), timeout=10, what="chromedriver to exit")
