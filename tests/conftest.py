from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.workspace import OPENED, Workspace


def pytest_configure(config: pytest.Config) -> None:
    # Child processes (daemons, workers) import the packages from this checkout.
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (repo, os.environ.get("PYTHONPATH", "")) if p
    )


def _fail_on_leftovers(leftovers: list[str], where: str) -> None:
    if leftovers:
        listing = "\n  ".join(leftovers)
        pytest.fail(
            f"the test left {len(leftovers)} process(es) running {where} (now killed):\n"
            f"  {listing}",
            pytrace=False,
        )


def _new_descendants(before: set[int]) -> set[int]:
    """Processes below this one that a test started: not there before it, nor below
    something that was (a module-scoped daemon respawning its workers), nor the
    interpreter's own multiprocessing helper, which serves the whole session."""
    older = set(before)
    for pid in before:
        older |= procs.descendants(pid)
    return {
        pid
        for pid in procs.descendants(os.getpid()) - older
        if "multiprocessing.resource_tracker" not in procs.describe(pid)
    }


@pytest.fixture(scope="session", autouse=True)
def multiprocessing_helper() -> None:
    """Start the interpreter's multiprocessing helper (its resource tracker) before any
    test: older than every test, it is never taken for one's leftover, whichever test
    first spawns a process (the racing store tests, the kill loop, the fallback's)."""
    resource_tracker.ensure_running()


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Fails a test that leaves behind a process it started without the `workspace` fixture:
    a direct Popen, or a workspace made by hand (closed here if the test did not)."""
    before = procs.descendants(os.getpid())
    OPENED.clear()
    yield
    leftovers: list[str] = []
    for space in OPENED:
        leftovers += space.leftovers if space.closed else space.close()
    OPENED.clear()
    leftovers += procs.kill_all(procs.settle(_new_descendants(before)))
    _fail_on_leftovers(leftovers, "after it ended")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path)
    try:
        yield space
    finally:
        leftovers = space.close()
        space.leftovers = []  # reported here, not again by no_stray_processes
    _fail_on_leftovers(leftovers, "in its workspace")
