"""The daemon's side of the spool: spooled jobs imported with their keys (at start, in
batches, and while it runs), a drainer's jobs taken over, nothing run twice."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobctl.library import close_clients, make_spec, run_background_job
from bgjobd import spool
from bgjobd.drain import IDLE_ENV
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import JobState, Outcome
from tests.support import procs
from tests.support.spooling import drainers, spooled, tokens
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

TOKEN_JOBS = {"allowed_jobs": {"Token": ["handle"], "Then": ["handle"]}}
MODES = spool.Modes(directory=0o700, file=0o600)


@pytest.fixture(autouse=True)
def _environment(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv(procs.MARKER_ENV, workspace.marker)
    monkeypatch.setenv(IDLE_ENV, "0.5")
    monkeypatch.delenv("BGJOBS_SOCKET", raising=False)
    yield
    close_clients()


def spool_directory(workspace: Workspace) -> Path:
    return spool.prepare(workspace.storage, MODES)


def test_thousands_of_spooled_jobs_are_imported_once_each(workspace: Workspace) -> None:
    """Written straight into the spool (as clients would, no drainer): the daemon answers,
    imports them in batches and runs each once; files of the same key are one job."""
    workspace.write_config({**TOKEN_JOBS, "daemon": {"workers": 2}})
    out = workspace.root / "tokens"
    directory = spool_directory(workspace)
    count = 2000
    now = time.time()
    for n in range(count):
        spec = make_spec("Token", "handle", [str(out), f"t{n}"], key=f"k{n}")
        spool.write(directory, spec, now, MODES, fsync=False)
    daemon = workspace.start_daemon()
    assert daemon.answers()
    client = workspace.client()
    wait_for(lambda: len(tokens(out)) >= count, timeout=120, what="every spooled job to run")
    wait_for(lambda: not spooled(workspace), what="the spool to empty")
    assert sorted(tokens(out)) == sorted(f"t{n}" for n in range(count))
    assert client.stats().counts["succeeded"] == count
    # The same key spooled again (a resend) is the same job, not a second run.
    spool.write(directory, make_spec("Token", "handle", [str(out), "t0"], key="k0"), now, MODES,
                fsync=False)  # fmt: skip
    wait_for(lambda: not spooled(workspace), what="the resent file to be imported")
    assert sum(client.stats().counts.values()) == count
    assert tokens(out).count("t0") == 1


def test_a_delayed_job_keeps_its_time_through_the_spool(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    directory = spool_directory(workspace)
    spec = make_spec("Token", "handle", [str(out), "later"], 3600, key="later")
    submitted = time.time()
    spool.write(directory, spec, submitted, MODES, fsync=False)
    workspace.start_daemon()
    client = workspace.client()
    wait_for(lambda: not spooled(workspace), what="the import")
    job = client.list_jobs().jobs[0]
    assert job.state is JobState.SCHEDULED
    assert abs(job.run_at.timestamp() - (submitted + 3600)) < 1


def test_an_unreadable_or_refused_spool_file_is_set_aside(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    directory = spool_directory(workspace)
    (directory / "garbage.job").write_bytes(b"\xc1not msgpack")
    refused = make_spec("NotListed", "handle", key="refused")
    spool.write(directory, refused, time.time(), MODES, fsync=False)
    workspace.start_daemon()
    wait_for(lambda: not spooled(workspace), what="the files to be set aside")
    assert len(list(directory.glob(f"*{spool.REJECTED_SUFFIX}"))) == 2
    assert sum(workspace.client().stats().counts.values()) == 0
    assert "unreadable spool file" in workspace.error_log()


def test_a_daemon_started_during_a_drain_takes_over_without_running_twice(
    workspace: Workspace,
) -> None:
    """A chain and retries under way in the drainer when the daemon starts: the drainer
    finishes its attempt and exits, the daemon runs the rest; each link once."""
    workspace.write_config({**TOKEN_JOBS, "retry_attempts": 1, "retry_delay_seconds": 0})
    out = workspace.root / "tokens"
    gate = workspace.root / "gate"
    chain = run_background_job(
        "Token",
        "handle",
        [str(out), "link1", 0, str(gate)],
        then=[("Then", "handle", [str(out), "link2"]), ("Then", "handle", [str(out), "x"])],
    )
    others = [run_background_job("Token", "handle", [str(out), f"o{n}"]) for n in range(20)]
    wait_for(lambda: chain.id is not None and workspace.lock_files(), what="link 1 to start")
    workspace.start_daemon()
    workspace.client().ping()
    wait_for(
        lambda: "it takes the spool over" in workspace.log(),
        what="the drainer to see the daemon (during link 1's attempt)",
    )
    gate.touch()
    assert chain.wait(30) == "link1,link2,x"
    assert "taken over from the fallback drainer's spool" in workspace.log()
    assert [handle.wait(30) for handle in others] == [f"o{n}" for n in range(20)]
    wait_for(lambda: not spooled(workspace), what="the spool to empty")
    wait_for(lambda: not drainers(workspace), what="the drainer to exit")
    ran = tokens(out)
    assert sorted(ran) == sorted(["link1", "link2", "x", *(f"o{n}" for n in range(20))])
    assert "the daemon answers; it takes the spool over" in workspace.log()


def test_a_drainer_killed_in_an_attempt_is_recovered_not_run_twice(
    workspace: Workspace,
) -> None:
    """SIGKILL of the drainer while its worker runs a job: the daemon waits for that
    attempt to end (its worker's lock), records what the worker wrote down, and does
    not run the job again."""
    workspace.write_config({**TOKEN_JOBS, "retry_attempts": 2, "retry_delay_seconds": 0})
    out = workspace.root / "tokens"
    gate = workspace.root / "gate"
    handle = run_background_job("Token", "handle", [str(out), "once", 0, str(gate)])
    wait_for(workspace.lock_files, what="the attempt to start")
    (drainer,) = drainers(workspace)
    os.kill(drainer, signal.SIGKILL)
    wait_for(lambda: procs.is_gone(drainer), what="the drainer to die")
    workspace.start_daemon()
    gate.touch()
    result = handle.wait(30)
    job = handle.job()
    wait_for(lambda: not spooled(workspace), what="the spool to empty")
    # Whether the worker outlived its drainer and finished (its outcome recorded) or died
    # with it (an interrupted attempt, then the retry): one run.
    assert result == "once" and tokens(out) == ["once"]
    assert job.history[-1].outcome is Outcome.SUCCEEDED
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        assert store.find_by_key(job.key or "") == [job.id]
    finally:
        store.close()


def test_a_stopped_drainer_finishes_its_attempt_and_cancels_nothing(
    workspace: Workspace,
) -> None:
    """SIGTERM (e.g. the host shutting down): the attempt under way ends normally, the
    rest stays for the daemon."""
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    gate = workspace.root / "gate"
    first = run_background_job("Token", "handle", [str(out), "first", 0, str(gate)])
    second = run_background_job("Token", "handle", [str(out), "second"])
    wait_for(workspace.lock_files, what="the first attempt to start")
    (drainer,) = drainers(workspace)
    os.kill(drainer, signal.SIGTERM)
    gate.touch()
    wait_for(lambda: procs.is_gone(drainer), what="the drainer to exit")
    assert first.wait(10) == "first"
    assert tokens(out) == ["first"]
    workspace.start_daemon()
    assert second.wait(30) == "second"
    assert sorted(tokens(out)) == ["first", "second"]
