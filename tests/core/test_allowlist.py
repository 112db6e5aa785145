"""Only allow-listed (class, method) pairs ever run; refusals are SECURITY lines, exit 3,
and import nothing."""

from __future__ import annotations

import pytest

from tests.support.workspace import Workspace

REFUSALS = [
    ("Unlisted", "handle", "class 'Unlisted' is not in allowed_jobs"),
    ("Echo", "other", "method 'other' of Echo is not in allowed_jobs"),
    ("Echo", "_secret", "method '_secret' is private"),
    ("Echo", "__init__", "method '__init__' is private"),
    ("os.path", "join", "class name 'os.path' is not a plain identifier"),
    ("testjobs.Echo", "handle", "class name 'testjobs.Echo' is not a plain identifier"),
    ("../../etc", "handle", "class name '../../etc' is not a plain identifier"),
]


@pytest.mark.parametrize(("class_name", "method", "reason"), REFUSALS)
def test_run_job_refuses(workspace: Workspace, class_name: str, method: str, reason: str) -> None:
    done = workspace.run_job(class_name, method, "x")
    assert done.returncode == 3, done.stderr
    assert reason in done.stderr
    errors = workspace.error_log()
    assert f"[SECURITY] {class_name}::{method} - refused by run_job.py: {reason}" in errors
    assert "SUCCESS" not in workspace.log()
    assert workspace.lock_files() == []


def test_refusal_imports_nothing(workspace: Workspace) -> None:
    """A refused class is never imported: a jobs package that records its own import shows
    nothing was loaded, and no worker ever started."""
    package = workspace.root / "tripwire"
    package.mkdir()
    marker = workspace.root / "imported"
    (package / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Boom:\n    def handle(self): pass\n"
    )
    workspace.write_config({"jobs_package": "tripwire", "allowed_jobs": {"Boom": ["handle"]}})
    for class_name, method in (("Other", "handle"), ("Boom", "other"), ("Boom", "_x")):
        assert workspace.run_job(class_name, method).returncode == 3
    assert not marker.exists()


def test_daemon_refuses_the_same(workspace: Workspace) -> None:
    workspace.start_daemon()
    for class_name, method, reason in REFUSALS:
        done = workspace.bgjobctl("submit", class_name, method, "x")
        assert done.returncode == 3, done.stderr
        assert reason in done.stderr
        assert f"[SECURITY] {class_name}::{method} - refused submit: {reason}" in (
            workspace.error_log()
        )
    listing = workspace.client().list_jobs()
    assert listing.total == 0


def test_a_log_line_cannot_be_forged_by_a_refused_name(workspace: Workspace) -> None:
    name = "Evil\n[2026-01-01 00:00:00] [SUCCESS] Fake::job"
    assert workspace.run_job(name, "handle").returncode == 3
    errors = workspace.error_log().splitlines()
    assert len(errors) == 1
    assert "\\n[2026-01-01 00:00:00] [SUCCESS] Fake::job" in errors[0]
