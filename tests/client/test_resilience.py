"""The client survives whatever the daemon does: down, restarted, stopping."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgjobctl.aclient import AsyncClient, run_background_job_async
from bgjobctl.aclient import close_clients as close_async_clients
from bgjobctl.address import Address
from bgjobctl.library import close_clients, make_spec, run_background_job
from bgjobs.errors import DaemonUnreachable
from bgjobs.model import JobSpec
from tests.support.waiting import wait_for
from tests.support.workspace import DaemonProcess, Workspace

TOKEN_JOBS = {"allowed_jobs": {"Token": ["handle"]}}


@pytest.fixture
def configured(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The test process finds the workspace's daemon the way an application would."""
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv("BGJOBS_TEST_MARKER", workspace.marker)  # fallback runners die with us
    workspace.write_config(TOKEN_JOBS)
    yield workspace
    close_clients()


def tokens(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_process_that_fell_back_submits_normally_once_the_daemon_is_back(
    configured: Workspace,
) -> None:
    """The wedge: a connection closed when the daemon went must not be used again."""
    out = configured.root / "tokens"
    daemon = configured.start_daemon()
    assert run_background_job("Token", "handle", [str(out), "up"]).wait(10) == "up"
    assert daemon.stop() == 0
    fallen_back = run_background_job("Token", "handle", [str(out), "down"])
    assert fallen_back.id is None
    fallen_back.wait(30)
    configured.start_daemon()
    for n in range(3):
        handle = run_background_job("Token", "handle", [str(out), f"back{n}"], fallback="error")
        assert handle.id is not None
        assert handle.wait(10) == f"back{n}"
    assert sorted(tokens(out)) == ["back0", "back1", "back2", "down", "up"]


def test_the_asyncio_client_too(configured: Workspace) -> None:
    out = configured.root / "tokens"

    async def main() -> None:
        daemon = configured.start_daemon()
        first = await run_background_job_async("Token", "handle", [str(out), "up"])
        assert await first.wait(10) == "up"
        assert daemon.stop() == 0
        with pytest.raises(DaemonUnreachable):
            await run_background_job_async("Token", "handle", [str(out), "x"], fallback="error")
        configured.start_daemon()
        back = await run_background_job_async(
            "Token", "handle", [str(out), "back"], fallback="error"
        )
        assert back.id is not None and await back.wait(10) == "back"
        await close_async_clients()

    asyncio.run(main())
    assert sorted(tokens(out)) == ["back", "up"]


def long_job(configured: Workspace, out: Path) -> tuple[JobSpec, Path]:
    gate = configured.root / "gate"
    return make_spec("Token", "handle", [str(out), "long", 0, str(gate)]), gate


def drain_slowly(configured: Workspace) -> DaemonProcess:
    configured.write_config({**TOKEN_JOBS, "daemon": {"shutdown_timeout": 60}})
    return configured.start_daemon()


def refused_as_unreachable(call: Callable[[], object]) -> bool:
    try:
        call()
    except DaemonUnreachable as exc:
        assert "shutting down" in str(exc)
        return True
    return False


def test_a_stopping_daemon_answers_shutting_down_on_open_connections(
    configured: Workspace,
) -> None:
    """Requests on a connection opened before SIGTERM are refused as "unreachable" (so
    the library falls back), never failed with an internal error; the daemon then closes
    the connection before its store, and the client reconnects to the next daemon."""
    out = configured.root / "tokens"
    daemon = drain_slowly(configured)
    client = configured.client()
    spec, gate = long_job(configured, out)
    client.submit([spec])
    wait_for(configured.lock_files, what="the long job to start")
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: refused_as_unreachable(client.ping), what="the shutting-down reply")
    assert refused_as_unreachable(client.stats)
    refused = make_spec("Token", "handle", [str(out), "refused"])
    assert refused_as_unreachable(lambda: client.submit([refused]))
    # The library falls back: the job is stored and run by run_job.py, not lost.
    handle = run_background_job("Token", "handle", [str(out), "fell-back"])
    assert handle.id is None
    gate.touch()
    assert daemon.process.wait(30) == 0
    handle.wait(30)
    assert "internal error" not in daemon.stderr
    configured.start_daemon()
    client.ping()  # the same client, on a fresh connection
    assert sorted(tokens(out)) == ["fell-back", "long"]


def test_the_asyncio_client_reads_shutting_down_as_unreachable(configured: Workspace) -> None:
    out = configured.root / "tokens"
    daemon = drain_slowly(configured)
    spec, gate = long_job(configured, out)

    async def refused(client: AsyncClient, job_id: int) -> bool:
        try:
            await client.get(job_id)
        except DaemonUnreachable as exc:
            assert "shutting down" in str(exc)
            return True
        return False

    async def main() -> None:
        client = AsyncClient(Address(unix_path=configured.socket_path))
        try:
            job_id = (await client.submit([spec])).ids[0]
            wait_for(configured.lock_files, what="the long job to start")
            daemon.signal(signal.SIGTERM)
            for _ in range(500):
                if await refused(client, job_id):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("no shutting-down reply")
            with pytest.raises(DaemonUnreachable, match="shutting down"):
                await client.submit([make_spec("Token", "handle", [str(out), "refused"])])
            gate.touch()
            assert await asyncio.to_thread(daemon.process.wait, 30) == 0
            configured.start_daemon()
            assert (await client.get(job_id)).result == "long"  # reconnected
        finally:
            await client.close()

    asyncio.run(main())
    assert "internal error" not in daemon.stderr
    assert tokens(out) == ["long"]
