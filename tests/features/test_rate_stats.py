"""`bgjobctl stats` shows each rate-limited class's window (real daemon): its rate, its
starts within the window, the windows at their rate, the jobs they hold, and when the
next start frees; per `limit_by` value too."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bgjobs.model import JobSpec
from tests.support.workspace import Workspace

RATED = {
    "jobs": {
        "Echo": {"rate_limit": "1/h"},
        "Add": {"rate_limit": "2/m", "limit_by": 0},
    }
}


def test_stats_show_each_rate_limited_class(workspace: Workspace) -> None:
    workspace.write_config(RATED)
    workspace.start_daemon()
    client = workspace.client()
    echoes = client.submit(
        [JobSpec(class_name="Echo", method="handle", params=[n]) for n in range(3)]
    ).ids
    adds = client.submit(
        [JobSpec(class_name="Add", method="handle", params=[c, n]) for c, n in ("a1", "a2", "b3")]
    ).ids
    client.wait(echoes[0], 20)
    for job_id in adds:
        client.wait(job_id, 20)  # two a minute for "a": all three run

    rates = {r.class_name: r for r in client.stats().rates}
    assert sorted(rates) == ["Add", "Echo"]
    echo = rates["Echo"]
    assert (echo.rate, echo.limit_by, echo.started, echo.full, echo.held) == ("1/h", None, 1, 1, 2)
    assert echo.next_slot is not None
    assert 3500 < (echo.next_slot - datetime.now(UTC)).total_seconds() <= 3600
    add = rates["Add"]
    assert (add.rate, add.limit_by, add.started, add.keys, add.full, add.held) == (
        "2/m",
        0,
        3,
        2,
        1,  # "a" started twice: at its rate; "b" once
        0,
    )

    shown = workspace.bgjobctl("stats")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.split()[:6] == ["Echo", "1/h", "1", "1", "2", "in"] for line in lines)
    assert any(
        line.split()[:8] == ["Add", "2/m", "per", "params[0]", "3", "(2", "values)", "1"]
        for line in lines
    )
    as_json = json.loads(workspace.bgjobctl("--json", "stats").stdout)
    assert [(r["class_name"], r["held"]) for r in as_json["rates"]] == [("Add", 0), ("Echo", 2)]

    # Held jobs wait in their turn: never rejected.
    assert [client.get(job_id).state.value for job_id in echoes[1:]] == ["queued", "queued"]
