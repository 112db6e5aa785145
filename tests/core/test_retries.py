"""Retries through run_job.py: the right number of attempts, the right pauses."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from tests.support.workspace import Workspace


def _gaps(times_file: str) -> list[float]:
    times = [float(line) for line in Path(times_file).read_text().split()]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_retries_count_and_fixed_delay(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 3, "retry_delay_seconds": 0.3})
    counter = str(workspace.root / "count")
    done = workspace.run_job("Flaky", "handle", f"{counter},2")
    assert done.returncode == 0, done.stderr
    assert Path(counter).read_text() == "3"
    gaps = _gaps(counter + ".times")
    assert len(gaps) == 2
    assert all(0.3 <= gap < 1.5 for gap in gaps), gaps
    errors = workspace.error_log()
    assert (
        "job 1 attempt 1/4 failed: ConnectionRefusedError: call 1 refused; retrying in 0.3s"
        in errors
    )
    assert "job 1 attempt 2/4 failed" in errors
    assert "[SUCCESS] Flaky::handle - job 1 attempt 3/4 succeeded" in workspace.log()


def test_gives_up_after_all_attempts_with_exit_1(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 2, "retry_delay_seconds": 0})
    counter = str(workspace.root / "count")
    done = workspace.run_job("Flaky", "handle", f"{counter},10")
    assert done.returncode == 1
    assert Path(counter).read_text() == "3"
    errors = workspace.error_log()
    assert "job 1 attempt 3/3 failed: ConnectionRefusedError: call 3 refused; no retry" in errors
    assert "job 1 failed after 3 attempts: ConnectionRefusedError: call 3 refused" in errors


def test_exponential_backoff_doubles_and_caps(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "jobs": {
                "Flaky": {
                    "retry_attempts": 4,
                    "retry_delay_seconds": 0.2,
                    "backoff": "exponential",
                    "max_retry_delay": 0.5,
                }
            }
        }
    )
    counter = str(workspace.root / "count")
    assert workspace.run_job("Flaky", "handle", f"{counter},4").returncode == 0
    gaps = _gaps(counter + ".times")
    # 0.2, 0.4, then capped at 0.5 twice.
    expected = [0.2, 0.4, 0.5, 0.5]
    assert len(gaps) == 4
    for gap, want in zip(gaps, expected, strict=True):
        assert want <= gap < want + 1.0, gaps
    errors = workspace.error_log()
    for pause in ("0.2s", "0.4s", "0.5s"):
        assert f"retrying in {pause}" in errors


def test_jitter_spreads_delays_between_half_and_full(workspace: Workspace) -> None:
    workspace.write_config(
        {"jobs": {"Flaky": {"retry_attempts": 4, "retry_delay_seconds": 0.2, "jitter": True}}}
    )
    counter = str(workspace.root / "count")
    assert workspace.run_job("Flaky", "handle", f"{counter},4").returncode == 0
    # The delays as decided (logged), not as observed: a pause can only be late, so bounds on
    # the gaps would also hold for the un-jittered 0.2 s and could never catch its return.
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.e-]+)s", workspace.error_log())]
    assert len(delays) == 4, workspace.error_log()
    assert all(0.1 <= delay <= 0.2 for delay in delays), delays
    assert len(set(delays)) > 1 and min(delays) < 0.2, delays  # drawn, not the fixed delay
    gaps = _gaps(counter + ".times")
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True)), (gaps, delays)
