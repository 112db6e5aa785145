"""What the fallback tests look at: the tokens jobs wrote, the spool, the drainers."""

from __future__ import annotations

from pathlib import Path

from tests.support import procs
from tests.support.workspace import Workspace


def tokens(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def spooled(workspace: Workspace) -> list[Path]:
    return sorted((workspace.storage / "spool").glob("*.job"))


def drainers(workspace: Workspace) -> list[int]:
    return [
        pid
        for pid in procs.marked_processes(workspace.marker)
        if "bgjobd.drain" in procs.describe(pid)
    ]
