from __future__ import annotations

import json

from tests.support.workspace import Workspace


def test_stats_counts_and_workers(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 2, "retry_delay_seconds": 0})
    daemon = workspace.start_daemon()
    workspace.bgjobctl("submit", "Echo", "handle", "x", "--wait")
    # Three attempts, one job: "finished" counts jobs, not attempts.
    assert workspace.bgjobctl("submit", "Fail", "handle", "x", "--wait").returncode == 1
    stats = json.loads(workspace.bgjobctl("--json", "stats").stdout)
    assert stats["counts"]["succeeded"] == 1 and stats["counts"]["failed"] == 1
    assert set(stats["counts"]) == {
        "waiting",
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    }
    assert stats["finished_last_minute"] == 2
    assert stats["counts"]["failed"] == 1
    assert len(stats["workers"]) == 2 and stats["daemon_pid"] == daemon.pid
    assert workspace.bgjobctl("stats").returncode == 0
