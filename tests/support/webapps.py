"""Running an example web application under its real server, and talking to it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for
from tests.support.workspace import REPO, Workspace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    return fetch(url, "POST", timeout)


def get(url: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    return fetch(url, "GET", timeout)


def fetch(url: str, method: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def serving(workspace: Workspace, module: str, *args: str, cwd: Path = REPO) -> Iterator[str]:
    """Run `python -m MODULE ARGS` (a server; `{port}` in ARGS is replaced) from `cwd`
    (the repository's root) with the workspace's environment; yield its base URL."""
    port = free_port()
    log = (workspace.root / f"{module}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", module, *(arg.format(port=port) for arg in args)],
        cwd=cwd,
        env=workspace.env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    try:
        wait_for(lambda: process.poll() is not None or _answers(port), timeout=30, what=module)
        if process.poll() is not None:
            raise AssertionError((workspace.root / f"{module}.log").read_text())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
