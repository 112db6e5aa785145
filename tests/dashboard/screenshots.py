"""Take the dashboard screenshots in docs/ from a real daemon running real jobs.

    .venv/bin/python -m tests.dashboard.screenshots [OUTPUT_DIR]

The throughput chart covers the last hour, which a script cannot wait for: the hour before
the daemon starts is filled in through the store's own transitions (submitted, claimed,
finished), backdated; everything else on the pictures is the daemon at work.
"""

from __future__ import annotations

import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from bgjobd.store.base import FinishedAttempt, NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import ChainLink, ErrorInfo, JobSpec, JobState, Outcome, Priority
from tests.dashboard.support import free_port, launch, open_chromium
from tests.support.workspace import REPO, Workspace

DEMO_JOBS = Path(__file__).parent / "demojobs"
CLASSES = {
    "LessonCreatedService": ["handle"],
    "SendWelcomeEmail": ["handle"],
    "GenerateInvoicePdf": ["handle"],
    "TranscodeVideo": ["handle"],
    "ExportReport": ["handle"],
    "SyncCrmContacts": ["handle"],
    "SendReport": ["handle"],
}
SETTINGS: dict[str, Any] = {
    "jobs_package": "demojobs",
    "allowed_jobs": CLASSES,
    "retry_attempts": 0,
    "job_priority": {"TranscodeVideo": "low", "SendWelcomeEmail": "high"},
    "jobs": {"SyncCrmContacts": {"retry_attempts": 2, "retry_delay_seconds": 0.2}},
    "daemon": {"workers": 3},
}
HISTORY_ERROR = ErrorInfo(
    type="ConnectionRefusedError",
    message="crm.example.com:443 refused the connection",
    hierarchy=["ConnectionRefusedError"],
)


def backfill(store: SQLiteStore, now: float) -> None:
    """An hour of finished jobs, a few per minute, through the store's own transitions."""
    rng = random.Random(7)
    names = ["SendWelcomeEmail", "GenerateInvoicePdf", "LessonCreatedService"]
    for minute in range(60, 0, -1):
        base = now - minute * 60
        for _ in range(rng.randint(2, 9) + (6 if 20 < minute < 30 else 0)):
            start = base + rng.uniform(0, 55)
            class_name = rng.choice(names)
            [job_id] = store.add(
                [
                    NewJob(
                        class_name=class_name,
                        method="handle",
                        params=[rng.randint(1000, 9999), f"user{rng.randint(1, 500)}@example.com"],
                        priority=Priority.MEDIUM,
                        state=JobState.QUEUED,
                        run_at=start,
                        max_attempts=1,
                        timeout=300,
                        created_at=start,
                        owner="bgjobd@demo",
                    )
                ]
            )
            store.claim(job_id, "bgjobd@demo", None, start)
            duration = rng.uniform(0.05, 2.5)
            failed = rng.random() < 0.06
            store.finish_attempt(
                job_id,
                FinishedAttempt(
                    1,
                    Outcome.FAILED if failed else Outcome.SUCCEEDED,
                    start + duration,
                    duration,
                    HISTORY_ERROR if failed else None,
                ),
                JobState.FAILED if failed else JobState.SUCCEEDED,
                result=None if failed else "ok",
            )
    store.commit()


def submit(workspace: Workspace, *specs: JobSpec) -> list[int]:
    client = workspace.client()
    try:
        return list(client.submit(list(specs)).ids)
    finally:
        client.close()


def job(class_name: str, *params: Any, **options: Any) -> JobSpec:
    return JobSpec(class_name=class_name, method="handle", params=list(params), **options)


def wait_final(workspace: Workspace, ids: list[int]) -> None:
    """Until these jobs and the links of their chains are final."""
    client = workspace.client()
    try:
        for job_id in ids:
            client.wait(job_id, timeout=60)
            chain = client.get_with_chain(job_id).chain
            for link in chain:
                client.wait(link.id, timeout=60)
    finally:
        client.close()


def shoot(
    driver: WebDriver,
    url: str,
    path: Path,
    width: int,
    *,
    dark: bool = False,
    screen: int | None = None,
    open_details: str = "",
) -> None:
    """A picture of the whole page, or of its first `screen` pixels; `open_details` names
    `<details>` elements to open first."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )
    driver.set_window_size(width, 900)
    driver.get(url)
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live"
    )
    time.sleep(0.5)  # let the first live refresh settle before the picture
    if open_details:
        driver.execute_script(
            "document.querySelectorAll(arguments[0]).forEach((node) => { node.open = true; })",
            open_details,
        )
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(width, min(screen or int(height), 5000) + int(chrome))
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def main(output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bgjobs-shots-"))
    workspace = Workspace(root)
    (root / "demojobs").symlink_to(DEMO_JOBS, target_is_directory=True)
    driver = None
    try:
        port = free_port()
        settings = {
            **SETTINGS,
            "daemon": {**SETTINGS["daemon"], "socket": str(workspace.socket_path)},
            "dashboard": {"enabled": True, "listen": f"127.0.0.1:{port}"},
        }
        workspace.write_config(raw=tomli_w.dumps(settings))
        store = SQLiteStore(workspace.storage / "bgjobs.db")
        backfill(store, time.time())
        store.close()
        dashboard = launch(workspace, port)
        report = ChainLink("SendReport", "handle", ["ops@example.com"])
        quick = submit(
            workspace,
            job("LessonCreatedService", "English Grammar 101"),
            job("SendWelcomeEmail", 4182, "ada@example.com"),
            job("GenerateInvoicePdf", "INV-2024-0193", 3),
            job("SyncCrmContacts", "acme-corp", then=[report]),
            job("SendWelcomeEmail", 4183, "<img src=x onerror=alert(1)>"),
        )
        wait_final(workspace, quick)
        submit(
            workspace,
            job("TranscodeVideo", "lecture-42", 900),
            job("ExportReport", "monthly-revenue", 900),
            job("TranscodeVideo", "intro-course", 900),
        )
        time.sleep(1.0)
        submit(
            workspace,
            job("SendWelcomeEmail", 4190, "grace@example.com"),
            job("GenerateInvoicePdf", "INV-2024-0194"),
            job("LessonCreatedService", "Algebra II", priority=Priority.LOW),
            job("GenerateInvoicePdf", "INV-2024-0195", delay=600),
            job("ExportReport", "weekly-signups", delay=3600),
        )
        driver = open_chromium(root / "profile", workspace.marker)
        dashboard.log_in(driver)
        time.sleep(3.2)  # running jobs show a few seconds of elapsed time
        shoot(driver, dashboard.url + "/dashboard/jobs", output / "dashboard.png", 1440)
        shoot(
            driver,
            dashboard.url + "/dashboard/jobs",
            output / "dashboard-dark.png",
            1440,
            dark=True,
        )
        shoot(
            driver,
            dashboard.url + "/dashboard/jobs",
            output / "dashboard-phone.png",
            390,
            screen=844,
        )
        shoot(
            driver,
            f"{dashboard.url}/dashboard/jobs/{quick[3]}",
            output / "job-detail.png",
            1280,
            open_details="#error-trace-box",
        )
    finally:
        if driver is not None:
            driver.quit()
        workspace.close()


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs")
