"""The node of each attempt on the job page and in the jobs' tables, and the nodes panel."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.support import (
    click,
    no_alerts,
    row_text,
    start_dashboard,
    text_of,
    texts_of,
    wait_live,
    wait_until,
)
from tests.support.nodes import ensure_own_row, node_row, register, workspace_config
from tests.support.workspace import Workspace

PEER_HOST = '<em id="xss-host">peer-host</em>'
"""Markup in a node's host: shown as text, never parsed."""


def test_the_job_page_and_the_tables_name_the_node(
    workspace: Workspace, browser: WebDriver
) -> None:
    dashboard = start_dashboard(workspace)
    finished = dashboard.submit("Echo", "x")
    node = dashboard.wait_state(finished, "succeeded").owner
    assert node

    dashboard.log_in(browser)
    browser.get(f"{dashboard.url}/dashboard/jobs/{finished}")
    fields = dict(
        browser.execute_script(
            "return [...document.querySelectorAll('#fields div')]"
            ".map((row) => [row.querySelector('dt').innerText, row.querySelector('dd').innerText])"
        )
    )
    assert fields["Node"] == node
    assert texts_of(browser, "#attempts .c-node") == [node]

    # Drawn by the page's script: a job that never ran, retried from its page.
    later = dashboard.submit("Echo", "y", delay=300)
    workspace.client().cancel(later)
    browser.get(f"{dashboard.url}/dashboard/jobs/{later}")
    wait_live(browser)
    assert texts_of(browser, "#attempts .c-node") == []
    browser.execute_script("window.__sameDocument = true")
    click(browser, '#job-actions button[data-verb="retry"]')
    wait_until(browser, lambda d: texts_of(d, "#attempts .c-node") == [node])
    assert browser.execute_script("return window.__sameDocument") is True, "the page reloaded"

    browser.get(f"{dashboard.url}/dashboard/jobs")
    wait_live(browser)
    assert node in row_text(browser, "recent", finished)
    waiting = dashboard.submit("Echo", "z", delay=300)
    wait_until(browser, lambda d: row_text(d, "scheduled", waiting))
    browser.get(f"{dashboard.url}/dashboard/jobs?state=finished")
    assert node in row_text(browser, "listing", finished)
    no_alerts(browser)


def test_the_overview_has_a_nodes_panel(workspace: Workspace, browser: WebDriver) -> None:
    dashboard = start_dashboard(workspace)
    config = workspace_config(workspace)
    ensure_own_row(workspace, dashboard.daemon.pid)
    register(config, node_row("peer-b", pid=4242, host=PEER_HOST, busy=1, total=4))

    dashboard.log_in(browser)
    browser.get(f"{dashboard.url}/dashboard/jobs")
    wait_live(browser)
    own = text_of(browser, f'#nodes tr[data-node="{config.node_name}"]')
    assert own.startswith(f"{config.node_name} this node")
    peer = text_of(browser, '#nodes tr[data-node="peer-b"]')
    assert peer.startswith(f"peer-b {PEER_HOST} ") and peer.endswith(" ago 1/4")
    assert "this node" not in peer
    assert not browser.find_elements(By.ID, "xss-host")

    # Redrawn by the page's script when a node comes.
    register(config, node_row("peer-c", pid=4343, host="other", busy=0, total=2))
    dashboard.submit("Echo", "wake the page")
    wait_until(browser, lambda d: text_of(d, '#nodes tr[data-node="peer-c"]').endswith(" 0/2"))
    assert text_of(browser, "#node-count") == str(len(texts_of(browser, "#nodes tr")))
    assert not browser.find_elements(By.ID, "xss-host")
    no_alerts(browser)
