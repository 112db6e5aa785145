"""Several processes (as a prefork server's workers) submit while the daemon is SIGKILLed
and restarted: no request error reaches them, no job is lost, and none runs twice unless
an attempt was under way at a kill, which its history then shows."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from functools import partial
from pathlib import Path

from bgjobctl.library import close_clients, run_background_job
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.errors import DaemonUnreachable
from bgjobs.model import JobState, Outcome
from tests.support.procs import MARKER_ENV
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

PROCESSES = 4
PER_PROCESS = 400
KILLS = 3
FALLBACKS_PER_PROCESS = 2
"""Each process falls back to run_job.py this often, then waits for the daemon instead
(the same key each time), so the host is not flooded with runners."""


def submit_tokens(config: str, marker: str, out: str, prefix: str, report: str) -> None:
    """One application process: a job per token, keyed by the token."""
    os.environ["BGJOBS_CONFIG"] = config
    os.environ[MARKER_ENV] = marker
    submitted: list[str] = []
    errors: list[str] = []
    fallbacks = 0
    for n in range(PER_PROCESS):
        token = f"{prefix}-{n}"
        deadline = time.monotonic() + 60
        while True:
            spawn = fallbacks < FALLBACKS_PER_PROCESS
            try:
                handle = run_background_job(
                    "Token",
                    "handle",
                    [out, token],
                    key=token,
                    fallback="spawn" if spawn else "error",
                )
            except DaemonUnreachable:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                errors.append(f"{token}: the daemon stayed away")
            except Exception as exc:  # noqa: BLE001  # every other error is a failure to report
                errors.append(f"{token}: {exc!r}")
            else:
                fallbacks += handle.id is None
                submitted.append(token)
            break
    close_clients()
    Path(report).write_text(json.dumps({"submitted": submitted, "errors": errors}))


def test_no_job_lost_or_doubled_across_sigkills(workspace: Workspace) -> None:
    workspace.write_config(
        {"allowed_jobs": {"Token": ["handle"]}, "retry_attempts": 2, "retry_delay_seconds": 0}
    )
    daemon = workspace.start_daemon()
    out = workspace.root / "tokens"
    reports = [workspace.root / f"report-{n}.json" for n in range(PROCESSES)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=submit_tokens,
            args=(str(workspace.config_path), workspace.marker, str(out), f"p{n}", str(report)),
        )
        for n, report in enumerate(reports)
    ]
    for process in processes:
        process.start()
    try:
        for kill in range(1, KILLS + 1):
            wanted = kill * PROCESSES * PER_PROCESS // (KILLS + 1)
            wait_for(partial(runs_reach, out, wanted), timeout=60, what=f"{wanted} runs")
            daemon.kill()
            daemon = workspace.start_daemon()
        for process in processes:
            process.join(120)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    submitted: list[str] = []
    for report in reports:
        outcome = json.loads(report.read_text())
        assert outcome["errors"] == []
        submitted += outcome["submitted"]
    assert len(submitted) == PROCESSES * PER_PROCESS
    wait_for(lambda: set(tokens(out)) >= set(submitted), timeout=120, what="every job to run")
    client = workspace.client()
    wait_for(
        lambda: not any(client.stats().counts[s.value] for s in LIVE), timeout=60, what="the end"
    )
    runs = Counter(tokens(out))
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        for token in submitted:
            ids = store.find_by_key(token)
            assert ids is not None and len(ids) == 1, token
            job = store.get(ids[0])
            assert job is not None and job.state is JobState.SUCCEEDED, (token, job)
            if runs[token] > 1:  # only an attempt under way at a kill, and it says so
                assert len(job.history) >= runs[token], (token, job.history)
                assert Outcome.INTERRUPTED in [attempt.outcome for attempt in job.history]
        assert sum(store.counts().values()) == len(submitted)
    finally:
        store.close()


LIVE = (JobState.WAITING, JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING)


def tokens(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def runs_reach(path: Path, count: int) -> bool:
    return len(tokens(path)) >= count
