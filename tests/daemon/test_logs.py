"""`GetOutput` and `GetLog` (`bgjobctl logs`): a job's output and the log files come through
the socket, so a client that shares no disk with the daemon sees them (TCP, another storage
directory), and a node without a job's output file shows the tails the store keeps."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobd.capture import STORED_TAIL_BYTES
from bgjobs.model import JobInfo, JobSpec, JobState
from bgjobs.sizes import format_size
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace, merged

TALKER_FIRST = b"first line, before the gate\n"
TALKER_SECOND = b"second line, after the gate\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tcp_daemon(workspace: Workspace, extra: dict[str, Any] | None = None) -> tuple[Path, Client]:
    """A daemon on TCP; the configuration of a client that shares nothing of its storage
    (another storage directory, its own copy of the token), and a library client."""
    port = _free_port()
    workspace.write_config(
        merged({"daemon": {"transport": "tcp", "listen": f"127.0.0.1:{port}"}}, extra or {})
    )
    workspace.start_daemon(ready=False)
    token = workspace.storage / "bgjobd.token"
    wait_for(token.exists, what="the token file")
    elsewhere = workspace.root / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(token, elsewhere / "token")
    client_settings = merged(
        workspace.settings,
        {"daemon": {"storage": str(elsewhere / "storage"), "token_file": str(elsewhere / "token")}},
    )
    config = elsewhere / "bgjobs.toml"
    config.write_bytes(tomli_w.dumps(client_settings).encode())
    wait_for(
        lambda: _remote(workspace, config, "ping").returncode == 0,
        timeout=60,
        what="the TCP daemon",
    )
    client = Client(Address(port=port, token_path=elsewhere / "token"), timeout=30)
    return config, client


def _remote(workspace: Workspace, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return workspace.bgjobctl("--config", str(config), *args)


def _submit(client: Client, class_name: str, *params: str) -> int:
    spec = JobSpec(class_name=class_name, method="handle", params=list(params))
    return client.submit([spec]).ids[0]


def test_logs_and_follow_over_tcp_from_a_client_without_the_daemons_disk(
    workspace: Workspace,
) -> None:
    config, client = _tcp_daemon(workspace, {"allowed_jobs": {"Talker": ["handle"]}})
    with client:
        _follow_over_tcp(workspace, config, client)


def _follow_over_tcp(workspace: Workspace, config: Path, client: Client) -> None:
    printer = _submit(client, "Printer", "far")
    client.wait(printer, timeout=30)
    shown = _remote(workspace, config, "logs", str(printer))
    assert shown.returncode == 0, shown.stderr
    on_disk = (workspace.storage / "logs" / "jobs" / f"{printer}.log").read_text()
    assert shown.stdout == on_disk
    assert "out: far" in shown.stdout and "child: far" in shown.stdout

    gate = workspace.root / "gate"
    talker = _submit(client, "Talker", str(gate))
    command = [sys.executable, "-m", "bgjobctl", "--config", str(config), "logs", str(talker), "-f"]
    with subprocess.Popen(
        command, cwd=workspace.root, env=workspace.env, stdout=subprocess.PIPE
    ) as follower:
        try:
            assert follower.stdout is not None
            # The first line arrives while the job waits at its gate: the running attempt's.
            assert follower.stdout.read(len(TALKER_FIRST)) == TALKER_FIRST
            gate.touch()
            rest = follower.stdout.read()
            assert follower.wait(30) == 0
        finally:
            follower.kill()
    assert rest == TALKER_SECOND
    assert (workspace.storage / "logs" / "jobs" / f"{talker}.log").read_bytes() == (
        TALKER_FIRST + TALKER_SECOND
    )

    unknown = _remote(workspace, config, "logs", "999999")
    assert unknown.returncode == 1 and "no job 999999" in unknown.stderr
    assert not (workspace.root / "elsewhere" / "storage" / "logs").exists()


def test_the_error_log_with_lines_over_tcp(workspace: Workspace) -> None:
    config, client = _tcp_daemon(workspace)
    with client:
        for reason in ("one", "two", "three"):
            client.wait(_submit(client, "Fail", reason), timeout=30)
    errors = (workspace.storage / "logs" / "background_jobs_errors.log").read_text()
    shown = _remote(workspace, config, "logs", "--errors", "-n", "2")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "".join(errors.splitlines(keepends=True)[-2:])
    assert "three" in shown.stdout
    whole = _remote(workspace, config, "logs")
    main = (workspace.storage / "logs" / "background_jobs.log").read_text()
    assert whole.returncode == 0 and whole.stdout == main


def test_a_missing_log_file_is_an_error_unless_followed(workspace: Workspace) -> None:
    workspace.start_daemon()
    (workspace.storage / "logs" / "background_jobs_errors.log").unlink(missing_ok=True)
    shown = workspace.bgjobctl("logs", "--errors")
    assert shown.returncode == 1 and "does not exist yet" in shown.stderr


def _outputs(workspace: Workspace, job_id: int, count: int) -> list[tuple[int, int, int, bytes]]:
    """The job's rows of the outputs table: (round, attempt, printed, tail), once `count`
    are there. Read through another connection: an attempt's outcome commits a moment
    after the daemon answers `wait` (its lazy commit)."""

    def all_there() -> list[tuple[int, int, int, bytes]]:
        rows = _rows_of_outputs(workspace, job_id)
        return rows if len(rows) == count else []  # count > 0: an empty list is "not yet"

    return wait_for(all_there, what=f"{count} output row(s) of job {job_id}")


def _rows_of_outputs(workspace: Workspace, job_id: int) -> list[tuple[int, int, int, bytes]]:
    with contextlib.closing(sqlite3.connect(workspace.storage / "bgjobs.db")) as db:
        rows = db.execute(
            "SELECT round, attempt, printed, tail FROM outputs WHERE job_id = ? "
            "ORDER BY round, attempt",
            (job_id,),
        ).fetchall()
    return [(int(r), int(a), int(p), bytes(t)) for r, a, p, t in rows]


def _run(workspace: Workspace, spec: JobSpec) -> JobInfo:
    client = workspace.client()
    job_id = client.submit([spec]).ids[0]
    return client.wait(job_id, timeout=60)


def test_the_stored_tails_are_shown_when_the_file_is_not_on_this_node(
    workspace: Workspace,
) -> None:
    workspace.write_config({"retry_attempts": 1, "retry_delay_seconds": 0})
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Chatty", method="fail", params=["said twice"]))
    assert job.state is JobState.FAILED and job.attempts == 2
    output = workspace.storage / "logs" / "jobs" / f"{job.id}.log"
    whole = output.read_bytes()
    assert whole == b"said twice\nsaid twice\n"
    assert _outputs(workspace, job.id, 2) == [
        (1, 1, 11, b"said twice\n"),
        (1, 2, 11, b"said twice\n"),
    ]
    output.unlink()  # as on another node, whose disk never had it

    shown = workspace.bgjobctl("logs", str(job.id))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == whole
    assert "not on this node" in shown.stderr and "last 64 KiB of each attempt" in shown.stderr
    last = workspace.bgjobctl("logs", str(job.id), "-n", "1")
    assert last.stdout == "said twice\n"


def test_a_huge_output_keeps_only_its_last_64_kib_in_the_store(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": {"Flood": ["handle"]}, "max_output_bytes": "1MiB"})
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Flood", method="handle", params=[300_000]))
    assert job.state is JobState.SUCCEEDED, job.error
    output = workspace.storage / "logs" / "jobs" / f"{job.id}.log"
    whole = output.read_bytes()
    [(_, attempt, printed, tail)] = _outputs(workspace, job.id, 1)
    assert (attempt, printed) == (1, len(whole))
    assert len(tail) == STORED_TAIL_BYTES
    assert tail == whole[-STORED_TAIL_BYTES:]

    output.unlink()
    shown = subprocess.run(
        [sys.executable, "-m", "bgjobctl", "logs", str(job.id)],
        cwd=workspace.root,
        env=workspace.env,
        capture_output=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    missing = format_size(len(whole) - STORED_TAIL_BYTES)
    marker = f"[... {missing} of attempt 1's output before this"
    assert shown.stdout.startswith(marker.encode()), shown.stdout[:200]
    assert shown.stdout.endswith(b"\n" + tail)


def test_a_timed_out_attempt_keeps_its_tail_too(workspace: Workspace) -> None:
    """The daemon kills the worker at the deadline; the attempt's output ends the job's file
    then, and its end goes to the store with the attempt."""
    workspace.write_config({"jobs": {"Chatty": {"timeout": 1}}})
    workspace.start_daemon()
    job = _run(workspace, JobSpec(class_name="Chatty", method="handle", params=["late", 60]))
    assert job.state is JobState.FAILED and job.error is not None
    assert job.error.type == "TimeoutError"
    assert _outputs(workspace, job.id, 1) == [(1, 1, 5, b"late\n")]


def test_a_silent_job_writes_no_outputs_row(workspace: Workspace) -> None:
    workspace.start_daemon()
    silent = _run(workspace, JobSpec(class_name="Echo", method="handle", params=["quiet"]))
    loud = _run(workspace, JobSpec(class_name="Printer", method="handle", params=["loud"]))
    assert silent.state is loud.state is JobState.SUCCEEDED
    _outputs(workspace, loud.id, 1)  # committed after the silent job's outcome
    assert _rows_of_outputs(workspace, silent.id) == []
    shown = workspace.bgjobctl("logs", str(silent.id))
    assert shown.returncode == 0 and shown.stdout == ""
    assert f"job {silent.id} (succeeded) printed nothing" in shown.stderr
