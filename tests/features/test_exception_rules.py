"""Exception-based retry rules, against a real daemon (and run_job.py)."""

from __future__ import annotations

from pathlib import Path

from bgjobs.model import JobInfo, JobSpec, JobState, Outcome
from tests.support.workspace import Workspace


def _run(workspace: Workspace, spec: JobSpec, timeout: float = 20) -> JobInfo:
    client = workspace.client()
    return client.wait(client.submit([spec]).ids[0], timeout)


def test_a_rule_matches_subclasses(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "exceptions": {
                "ConnectionError": {
                    "action": "retry",
                    "retry_attempts": 3,
                    "retry_delay_seconds": 0.05,
                }
            }
        }
    )
    workspace.start_daemon()
    counter = workspace.root / "count"
    job = _run(workspace, JobSpec(class_name="Flaky", method="handle", params=[str(counter), 2]))
    assert job.state is JobState.SUCCEEDED and job.attempts == 3
    errors = workspace.error_log()
    assert (
        "job 1 attempt 1/4 failed: ConnectionRefusedError: call 1 refused; "
        "rule ConnectionError: retrying in 0.05s"
    ) in errors


def test_per_job_rule_beats_global_rule_for_the_same_class(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "exceptions": {"ConnectionRefusedError": {"action": "fail"}},
            "jobs": {
                "Flaky": {
                    "exceptions": {
                        "ConnectionRefusedError": {
                            "action": "retry",
                            "retry_attempts": 2,
                            "retry_delay_seconds": 0,
                        }
                    }
                }
            },
        }
    )
    workspace.start_daemon()
    counter = workspace.root / "count"
    job = _run(workspace, JobSpec(class_name="Flaky", method="handle", params=[str(counter), 2]))
    assert job.state is JobState.SUCCEEDED
    assert "rule jobs.Flaky.exceptions.ConnectionRefusedError: retrying" in workspace.error_log()


def test_more_specific_class_wins_over_a_per_job_rule_for_a_base(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "exceptions": {"ConnectionRefusedError": {"action": "fail"}},
            "jobs": {
                "Flaky": {"exceptions": {"OSError": {"action": "retry", "retry_attempts": 5}}}
            },
        }
    )
    workspace.start_daemon()
    job = _run(
        workspace,
        JobSpec(class_name="Flaky", method="handle", params=[str(workspace.root / "c"), 2]),
    )
    assert job.state is JobState.FAILED and job.attempts == 1
    assert job.reason == "rule ConnectionRefusedError: no retry"


def test_action_fail_stops_retries(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 5, "exceptions": {"ValueError": {"action": "fail"}}})
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Fail", method="handle", params=["bad input"]))
    assert job.state is JobState.FAILED and job.attempts == 1
    assert "job 1 attempt 1/1 failed: ValueError: bad input; rule ValueError: no retry" in (
        workspace.error_log()
    )


def test_dotted_and_short_names_match_the_hierarchy(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "retry_attempts": 3,
            "retry_delay_seconds": 0,
            "exceptions": {
                "http.client.HTTPException": {"action": "fail"},
                "ExpatError": {"action": "fail"},
            },
        }
    )
    workspace.start_daemon()
    # NotConnected subclasses http.client.HTTPException: the dotted rule matches it.
    job = _run(
        workspace, JobSpec(class_name="Raise", method="handle", params=["http.client.NotConnected"])
    )
    assert job.attempts == 1
    assert job.reason == "rule http.client.HTTPException: no retry"
    job = _run(
        workspace,
        JobSpec(class_name="Raise", method="handle", params=["xml.parsers.expat.ExpatError"]),
    )
    assert job.attempts == 1 and job.reason == "rule ExpatError: no retry"
    job = _run(workspace, JobSpec(class_name="Raise", method="handle", params=["KeyError"]))
    assert job.attempts == 4 and job.reason is None


def test_timeouts_match_as_timeout_error(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "jobs": {
                "Sleep": {
                    "timeout": 0.5,
                    "exceptions": {
                        "TimeoutError": {
                            "action": "retry",
                            "retry_attempts": 1,
                            "retry_delay_seconds": 0,
                        }
                    },
                }
            }
        }
    )
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Sleep", method="handle", params=[30]))
    assert job.state is JobState.FAILED
    assert [a.outcome for a in job.history] == [Outcome.TIMED_OUT, Outcome.TIMED_OUT]
    assert "rule jobs.Sleep.exceptions.TimeoutError: retrying in 0s" in workspace.error_log()


def test_a_job_decides_with_retry_and_fail(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 2, "retry_delay_seconds": 5})
    workspace.start_daemon()
    counter = workspace.root / "count"
    job = _run(
        workspace, JobSpec(class_name="SelfDecides", method="retry", params=[str(counter), 0.05])
    )
    assert job.state is JobState.FAILED and Path(counter).read_text() == "3"
    assert "the job raised Retry: retrying in 0.05s" in workspace.error_log()
    job = _run(workspace, JobSpec(class_name="SelfDecides", method="fail", params=["hopeless"]))
    assert job.error is not None
    assert job.attempts == 1 and job.error.summary() == "Fail: hopeless"


def test_rules_apply_in_run_job_too(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 4, "exceptions": {"ValueError": {"action": "fail"}}})
    done = workspace.run_job("Fail", "handle", "x")
    assert done.returncode == 1
    assert "rule ValueError: no retry" in workspace.error_log()


def test_rule_config_errors_name_the_key(workspace: Workspace) -> None:
    workspace.write_config(raw='[exceptions.ValueError]\naction = "maybe"\n')
    done = workspace.run("-m", "bgjobd", "--check-config")
    assert done.returncode == 2 and "exceptions.ValueError.action" in done.stderr
    workspace.write_config(raw="[exceptions.ValueError]\nretry_delay_seconds = -1\n")
    done = workspace.run("-m", "bgjobd", "--check-config")
    assert done.returncode == 2 and "exceptions.ValueError.retry_delay_seconds" in done.stderr
