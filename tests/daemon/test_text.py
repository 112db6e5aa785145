"""Text that cannot hurt, against a real daemon: lone surrogates in errors, output and
results; control and bidi characters in the log files and on a terminal; capped log lines;
searches that find nothing instead of failing; a frame nested too deeply."""

from __future__ import annotations

import os
import pty
import select
import socket
import struct
import subprocess
import sys

import msgspec
import pytest

from bgjobs.errors import RefusedError
from bgjobs.model import JobSpec, JobState
from bgjobs.protocol import PROTOCOL_VERSION, Error, ErrorCode, Hello, Submit, decode_reply
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

TEXT_JOBS = {"allowed_jobs": {"Surrogates": ["error", "printed", "result"], "Controls": ["handle"]}}
RAW_CONTROLS = ("\x1b", "\x9b", "\u202e")


def test_an_error_with_a_lone_surrogate_is_recorded_not_a_crash(workspace: Workspace) -> None:
    workspace.write_config(TEXT_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="Surrogates", method="error")]).ids[0]
    job = client.wait(job_id, 20)
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.type == "ValueError"
    assert job.error.message == "bad \\ud800 text"


def test_printing_and_returning_a_lone_surrogate_succeed(workspace: Workspace) -> None:
    workspace.write_config(TEXT_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    printed, returned = client.submit(
        [JobSpec(class_name="Surrogates", method=name) for name in ("printed", "result")]
    ).ids
    job = client.wait(printed, 20)
    assert job.state is JobState.SUCCEEDED and job.result == "printed"
    output = (workspace.storage / "logs" / "jobs" / f"{printed}.log").read_bytes()
    assert output == b"a lone \\ud800 surrogate\n"
    job = client.wait(returned, 20)
    assert job.state is JobState.SUCCEEDED
    assert isinstance(job.result, str) and "\\ud800" in job.result


def test_controls_and_bidi_are_escaped_in_the_log_files(workspace: Workspace) -> None:
    workspace.write_config(TEXT_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    hostile = "p\x9b2J\u202eevil\x1b]0;title\x07"
    job_id = client.submit([JobSpec(class_name="Controls", method="handle", params=[hostile])]).ids[
        0
    ]
    assert client.wait(job_id, 20).state is JobState.FAILED
    with pytest.raises(RefusedError):
        client.submit([JobSpec(class_name="Evil\x9b\u202eClass", method="handle")])
    wait_for(lambda: "Evil" in workspace.error_log(), what="the refusal's log line")
    logs = workspace.log() + workspace.error_log()
    for raw in RAW_CONTROLS:
        assert raw not in logs, repr(raw)
    assert "p\\x9b2J\\u202eevil\\u001b]0;title\\u0007" in logs, "the params (JSON), escaped"
    assert "Evil\\x9b\\u202eClass" in logs, "the refused class name, escaped"
    assert "ValueError: \\x1b[31mred" in logs, "the error message, escaped"


def test_a_refused_huge_class_name_makes_a_capped_log_line(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    with pytest.raises(RefusedError):
        client.submit([JobSpec(class_name="C" * 1_000_000, method="handle")])
    wait_for(lambda: "CCCC" in workspace.error_log(), what="the refusal's log line")
    longest = max(len(line) for line in workspace.error_log().splitlines())
    assert longest < 17 * 1024, longest
    assert "characters cut)" in workspace.error_log()


def test_logs_on_a_terminal_escapes_what_the_job_printed(workspace: Workspace) -> None:
    workspace.write_config(TEXT_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="Controls", method="handle")]).ids[0]
    client.wait(job_id, 20)
    shown = _under_a_terminal(workspace, "logs", str(job_id))
    assert "\\x1b[31mred\\x1b[0m \\x9b2J \\u202eevil" in shown, shown
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown
    piped = workspace.bgjobctl("logs", str(job_id))
    assert piped.returncode == 0 and "\x1b[31mred" in piped.stdout, "a pipe gets the bytes"
    for odd in (str(2**63), "²"):
        refused = workspace.bgjobctl("logs", odd)
        assert refused.returncode == 2 and "not a job id" in refused.stderr, refused.stderr


def test_show_and_list_escape_what_a_job_holds(workspace: Workspace) -> None:
    workspace.write_config(TEXT_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit(
        [JobSpec(class_name="Controls", method="handle", params=["p\x9b\u202e"])]
    ).ids[0]
    client.wait(job_id, 20)
    # rich styles the table with escapes of its own on a terminal: look for the job's.
    shown = _under_a_terminal(workspace, "show", str(job_id))
    assert "\x9b" not in shown and "\u202e" not in shown and "\x1b[31mred" not in shown
    assert "ValueError: \\x1b[31mred" in shown, shown
    for args in (("show", str(job_id)), ("list",)):
        piped = workspace.bgjobctl(*args)
        assert piped.returncode == 0, piped.stderr
        assert not any(raw in piped.stdout for raw in RAW_CONTROLS), piped.stdout
        assert "p\\x9b\\u202e" in piped.stdout, piped.stdout


def _under_a_terminal(workspace: Workspace, *args: str) -> str:
    """Run bgjobctl with a pseudo-terminal as its stdout; what it wrote there."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bgjobctl", *args],
        cwd=workspace.root,
        env=workspace.env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    received = b""
    try:
        while select.select([leader], [], [], 30)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
    return received.decode("utf-8", "replace").replace("\r\n", "\n")


ODD_SEARCHES = ["99999999999999999999999", "²", "-1", "%", "_", "'", "٣"]


def test_odd_searches_give_empty_listings(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    client.wait(client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0], 20)
    for needle in ODD_SEARCHES:
        done = workspace.bgjobctl("list", "--json", "--search", needle)
        assert done.returncode == 0, (needle, done.stderr)
        assert msgspec.json.decode(done.stdout) == {"jobs": [], "total": 0}, needle
        assert client.list_jobs(search=needle).total == 0
    for offset in ["-1", str(2**64)]:
        done = workspace.bgjobctl("list", "--offset", offset)
        assert done.returncode == 2 and "offset" in done.stderr, (offset, done.stderr)
    assert workspace.bgjobctl("list", "--search", "1").stdout.count("Echo") == 1


def test_a_frame_nested_too_deeply_is_a_bad_request(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    hello = msgspec.msgpack.encode(Hello(version=PROTOCOL_VERSION, client="test"))
    submit = msgspec.msgpack.encode(
        Submit(jobs=[JobSpec(class_name="Echo", method="handle", params=[7])])
    )
    at = submit.index(b"\x91\x07")
    deep = submit[:at] + b"\x91" * 100_000 + b"\x07" + submit[at + 2 :]
    for _ in range(3):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(workspace.socket_path))
            sock.sendall(_frame(hello))
            _read_reply(sock)
            sock.sendall(_frame(deep))
            reply = _read_reply(sock)
        assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_REQUEST, reply
        assert "nested too deeply" in reply.message
    workspace.client().ping()
    assert "Traceback" not in daemon.stderr and "RecursionError" not in daemon.stderr
    assert workspace.client().list_jobs().total == 0


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _read_reply(sock: socket.socket) -> object:
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = sock.recv(65536)
        assert chunk, "the daemon closed the connection without a reply"
        data += chunk
    return decode_reply(data[4 : 4 + struct.unpack(">I", data[:4])[0]])
