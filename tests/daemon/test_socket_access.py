"""Who may connect: the socket's directory is chmod-ed only if bgjobd made it (never a
shared /tmp), and `allowed_uids` / `allowed_gids` let those users in, and only them."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from tests.support.other_user import NOBODY, as_nobody, hello_over, needs_root
from tests.support.workspace import Workspace

MARKER = ".made-by-bgjobd"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def socket_in(workspace: Workspace, directory: Path, extra: dict[str, Any] | None = None) -> None:
    workspace.socket_path = directory / "d.sock"
    workspace.write_config(extra or {})


def test_a_shared_sticky_directory_keeps_its_mode(workspace: Workspace) -> None:
    shared = workspace.socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    socket_in(workspace, shared)
    daemon = workspace.start_daemon()
    assert mode(shared) == 0o1777
    assert mode(workspace.socket_path) == 0o600
    assert mode(shared / "d.sock.lock") == 0o600
    assert not (shared / MARKER).exists()
    daemon.stop()
    workspace.start_daemon()  # and again at the next start
    assert mode(shared) == 0o1777


def test_a_directory_bgjobd_did_not_make_is_left_alone(workspace: Workspace) -> None:
    workspace.socket_dir.chmod(0o755)
    workspace.start_daemon()
    assert mode(workspace.socket_dir) == 0o755
    assert mode(workspace.socket_path) == 0o600


def test_a_directory_bgjobd_made_follows_the_configuration(workspace: Workspace) -> None:
    run = workspace.socket_dir / "run"
    socket_in(workspace, run)
    daemon = workspace.start_daemon()
    assert (mode(run), mode(workspace.socket_path)) == (0o700, 0o600)
    assert (run / MARKER).is_file()
    daemon.stop()
    run.chmod(0o755)
    daemon = workspace.start_daemon()
    assert mode(run) == 0o700  # ours: put back
    daemon.stop()
    socket_in(workspace, run, {"daemon": {"allowed_uids": [NOBODY]}})
    workspace.start_daemon()
    assert (mode(run), mode(workspace.socket_path)) == (0o711, 0o666)


@needs_root
def test_other_users_are_refused_unless_allowed(workspace: Workspace) -> None:
    workspace.socket_dir.chmod(0o711)  # the test's own directory: let others traverse it
    run = workspace.socket_dir / "run"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "connect: PermissionError"),
        ({"allowed_uids": [12345]}, "Error:unauthorized"),  # socket open, peer check refuses
        ({"allowed_uids": [NOBODY]}, "Welcome"),
        ({"allowed_gids": [NOBODY]}, "Welcome"),  # nobody's primary group is 65534 here
    ]
    for daemon_settings, expected in cases:
        socket_in(workspace, run, {"daemon": daemon_settings})
        daemon = workspace.start_daemon()
        assert as_nobody(hello_over(workspace.socket_path)) == expected, daemon_settings
        daemon.stop()


@needs_root
def test_allowed_users_reach_a_socket_in_a_sticky_directory(workspace: Workspace) -> None:
    workspace.socket_dir.chmod(0o711)
    shared = workspace.socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    socket_in(workspace, shared, {"daemon": {"allowed_uids": [NOBODY]}})
    workspace.start_daemon()
    assert as_nobody(hello_over(workspace.socket_path)) == "Welcome"
    assert mode(shared) == 0o1777


def test_a_directory_others_cannot_search_is_reported_not_changed(workspace: Workspace) -> None:
    socket_in(workspace, workspace.socket_dir, {"daemon": {"allowed_uids": [NOBODY]}})
    daemon = workspace.start_daemon()
    assert mode(workspace.socket_dir) == 0o700  # the test's directory, not bgjobd's
    assert f"cannot reach it: {workspace.socket_dir} is not searchable" in daemon.stderr


def test_parents_bgjobd_makes_let_allowed_users_through(workspace: Workspace) -> None:
    workspace.socket_dir.chmod(0o711)
    deep = workspace.socket_dir / "a" / "b"
    socket_in(workspace, deep, {"daemon": {"allowed_uids": [NOBODY]}})
    daemon = workspace.start_daemon()
    assert (mode(deep.parent), mode(deep)) == (0o711, 0o711)
    assert "cannot reach it" not in daemon.stderr
