"""The systemd unit is valid, and the daemon speaks systemd's notify protocol."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.workspace import REPO, DaemonProcess, Workspace


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing in CI")
        pytest.skip("systemd-analyze is not installed")
    unit = (REPO / "systemd" / "bgjobd.service").read_text()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    bgjobd = Path(sys.executable).with_name("bgjobd")
    local = tmp_path / "bgjobd.service"
    local.write_text(unit.replace("/usr/local/bin/bgjobd", str(bgjobd)))
    done = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # warnings mean a misspelt setting


@pytest.fixture
def notify_socket(workspace: Workspace) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in the daemon's NOTIFY_SOCKET."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = workspace.socket_dir / "notify"
    listener.bind(str(address))
    listener.settimeout(20)
    workspace.env["NOTIFY_SOCKET"] = str(address)
    workspace.env["WATCHDOG_USEC"] = "200000"
    try:
        yield listener
    finally:
        listener.close()


def test_ready_watchdog_and_stopping_notifications(
    workspace: Workspace, notify_socket: socket.socket
) -> None:
    # As systemd does: WATCHDOG_PID names the daemon itself from its start.
    daemon = DaemonProcess(workspace, workspace.config_path, own_pid_env="WATCHDOG_PID")
    workspace.daemons.append(daemon)
    messages = [notify_socket.recv(4096).decode() for _ in range(3)]
    assert messages[0] == "READY=1"
    assert "WATCHDOG=1" in messages[1:]
    assert daemon.answers()
    daemon.signal(signal.SIGTERM)
    while (message := notify_socket.recv(4096).decode()) == "WATCHDOG=1":
        pass
    assert message == "STOPPING=1"
    assert daemon.process.wait(20) == 0


def test_no_watchdog_pings_when_they_are_meant_for_another_process(
    workspace: Workspace, notify_socket: socket.socket
) -> None:
    workspace.env["WATCHDOG_PID"] = str(os.getpid())  # set before the daemon starts
    daemon = workspace.start_daemon()
    assert notify_socket.recv(4096).decode() == "READY=1"
    # The watchdog would ping as soon as the loop runs after READY; a request answered
    # means the loop has run.
    assert daemon.answers()
    daemon.signal(signal.SIGTERM)
    assert notify_socket.recv(4096).decode() == "STOPPING=1"
    assert daemon.process.wait(20) == 0
