from __future__ import annotations

from tests.support.workspace import Workspace


def test_ping(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl("ping")
    assert done.returncode == 0 and "bgjobd answers" in done.stdout


def test_ping_unreachable(workspace: Workspace) -> None:
    done = workspace.bgjobctl("ping")
    assert done.returncode == 4
