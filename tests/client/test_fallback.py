"""With the daemon down, a submit is checked as the daemon would check it, spooled beside
the store and run once by the host's one drainer; the handle behaves like any other."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobctl.aclient import close_clients as close_async_clients
from bgjobctl.aclient import run_background_job_async
from bgjobctl.library import JobClient, close_clients, make_spec, run_background_job
from bgjobd.drain import IDLE_ENV
from bgjobs.errors import DaemonUnreachable, JobFailed, RefusedError
from tests.support import procs
from tests.support.spooling import drainers, spooled, tokens
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

TOKEN_JOBS = {"allowed_jobs": {"Token": ["handle"]}}


@pytest.fixture(autouse=True)
def _environment(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The library finds this workspace; its drainers carry the marker (so a leftover
    fails the test) and give up after a short idle time."""
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv(procs.MARKER_ENV, workspace.marker)
    monkeypatch.setenv(IDLE_ENV, "0.5")
    monkeypatch.delenv("BGJOBS_SOCKET", raising=False)
    yield
    close_clients()


def test_a_job_falls_back_to_the_spool_and_runs_once(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    old = os.umask(0o022)
    try:
        handle = run_background_job("Token", "handle", [str(out), "offline", 0.5])
        files = spooled(workspace)
        assert [stat.S_IMODE(path.stat().st_mode) for path in files] == [0o600]
        assert stat.S_IMODE((workspace.storage / "spool").stat().st_mode) == 0o700
    finally:
        os.umask(old)
    assert handle.wait(30) == "offline"
    assert handle.id is not None and handle.job().key is not None
    assert tokens(out) == ["offline"]
    wait_for(lambda: not spooled(workspace), what="the spool file to go")
    wait_for(lambda: not drainers(workspace), what="the drainer to exit once idle")


def test_a_failure_raises_job_failed(workspace: Workspace) -> None:
    handle = run_background_job("Fail", "handle")
    with pytest.raises(JobFailed):
        handle.wait(30)
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")


def test_a_job_not_allowed_is_refused_in_the_caller(workspace: Workspace) -> None:
    with pytest.raises(RefusedError):
        run_background_job("NotListed", "handle")
    assert not spooled(workspace)
    assert not drainers(workspace)


def test_fallback_error_still_raises(workspace: Workspace) -> None:
    with pytest.raises(DaemonUnreachable):
        run_background_job("Echo", "handle", [1], fallback="error")
    assert not spooled(workspace)


def test_params_are_never_on_a_command_line_and_big_ones_work(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    gate = workspace.root / "gate"
    big = "s" * 900_000
    handle = run_background_job("Token", "handle", [str(out), "big", 0, str(gate)])
    second = run_background_job("Echo", "handle", [big])
    wait_for(lambda: drainers(workspace), what="the drainer")
    for pid in drainers(workspace):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"Token" not in cmdline and b"sss" not in cmdline and b"big" not in cmdline
    gate.touch()
    assert handle.wait(30) == "big"
    assert second.wait(30) == [big]
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")


def test_the_async_handle_waits_for_a_spooled_job(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"

    async def main() -> object:
        handle = await run_background_job_async("Token", "handle", [str(out), "async"])
        with pytest.raises(RefusedError):
            await run_background_job_async("NotListed", "handle")
        failed = await run_background_job_async("Fail", "handle")
        with pytest.raises(JobFailed):
            await failed.wait(30)
        result = await handle.wait(30)
        assert await handle.resolve() is not None
        await close_async_clients()
        return result

    assert asyncio.run(main()) == "async"
    assert tokens(out) == ["async"]
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")


def submit_many(config: str, marker: str, out: str, prefix: str, count: int) -> None:
    os.environ["BGJOBS_CONFIG"] = config
    os.environ[procs.MARKER_ENV] = marker
    os.environ[IDLE_ENV] = "0.5"
    for n in range(count):
        run_background_job("Token", "handle", [out, f"{prefix}-{n}"], key=f"{prefix}-{n}")
    close_clients()


def test_many_processes_one_drainer_every_job_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.write_config(TOKEN_JOBS)
    monkeypatch.delenv(procs.MARKER_ENV)  # the children mark themselves (not the resource tracker)
    out = workspace.root / "tokens"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=submit_many,
            args=(str(workspace.config_path), workspace.marker, str(out), f"p{n}", 40),
        )
        for n in range(4)
    ]
    seen: set[int] = set()
    for process in processes:
        process.start()

    def all_done() -> bool:
        seen.update(drainers(workspace))
        return len(tokens(out)) >= 160 and all(not p.is_alive() for p in processes)

    wait_for(all_done, timeout=120, what="every job to run")
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")
    assert sorted(tokens(out)) == sorted(f"p{p}-{n}" for p in range(4) for n in range(40))
    assert not spooled(workspace)
    # Not one per submit (160): one at a time holds the lock; a later one may follow an
    # idle exit between the bursts.
    assert 1 <= len(seen) <= 4, seen


def test_the_daemon_takes_the_spool_over(workspace: Workspace) -> None:
    """Jobs spooled (and some being drained) when the daemon starts: every job runs once,
    the rest is the daemon's, the drainer exits."""
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    gate = workspace.root / "gate"
    first = run_background_job("Token", "handle", [str(out), "first", 0, str(gate)])
    handles = [run_background_job("Token", "handle", [str(out), f"t{n}"]) for n in range(30)]
    wait_for(lambda: first.id is not None, what="the drainer to take the first job")
    workspace.start_daemon()
    gate.touch()
    assert first.wait(30) == "first"
    assert [handle.wait(30) for handle in handles] == [f"t{n}" for n in range(30)]
    wait_for(lambda: not spooled(workspace), what="the spool to empty")
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")
    assert sorted(tokens(out)) == sorted(["first", *(f"t{n}" for n in range(30))])
    client = workspace.client()
    assert sum(client.stats().counts.values()) == 31


def test_a_paused_daemon_falls_back_and_the_job_runs_once(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    daemon = workspace.start_daemon()
    out = workspace.root / "tokens"
    library = JobClient(config=str(workspace.config_path), timeout=1)
    try:
        library.client.ping()
        daemon.signal(signal.SIGSTOP)
        try:
            handle = library.submit(make_spec("Token", "handle", [str(out), "paused"]))
            assert spooled(workspace)
        finally:
            daemon.signal(signal.SIGCONT)
        assert handle.wait(30) == "paused"
        wait_for(lambda: not spooled(workspace), what="the spool to empty")
        wait_for(lambda: not drainers(workspace), what="the drainer to exit")
        client = workspace.client()
        wait_for(lambda: client.stats().counts["running"] == 0, what="nothing running")
        assert sum(client.stats().counts.values()) == 1
        assert tokens(out) == ["paused"]
    finally:
        library.close()
