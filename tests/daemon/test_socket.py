"""The socket is private: 0600 in a 0700 directory, peers of another uid refused, and a
second daemon never steals a live socket."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bgjobd.listen import ensure_token
from bgjobs.model import JobSpec, JobState
from bgjobs.protocol import (
    PROTOCOL_VERSION,
    Error,
    ErrorCode,
    FrameEncoder,
    Hello,
    Reply,
    Welcome,
    decode_reply,
)
from tests.support.workspace import Workspace


def test_socket_modes(workspace: Workspace) -> None:
    workspace.start_daemon()
    assert stat.S_IMODE(workspace.socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(workspace.socket_dir.stat().st_mode) == 0o700


# Perl (world-executable, unlike this checkout's virtualenv) plays the foreign client:
# it sends a Hello frame and prints the first reply frame's bytes in hex.
FOREIGN_CLIENT = r"""
use IO::Socket::UNIX; $SIG{PIPE} = "IGNORE";
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
print $s pack('H*', $ARGV[1]); my $reply = ''; my $buf;
while (length($reply) < 4 && sysread($s, $buf, 4 - length($reply))) { $reply .= $buf }
my $want = length($reply) == 4 ? 4 + unpack('N', $reply) : 0;
while (length($reply) < $want && sysread($s, $buf, $want - length($reply))) { $reply .= $buf }
print unpack('H*', $reply);
"""


def _as_foreign_user(workspace: Workspace) -> Reply | None:
    hello = FrameEncoder().encode(Hello(version=PROTOCOL_VERSION, rid=1)).hex()
    done = subprocess.run(
        ["perl", "-e", FOREIGN_CLIENT, str(workspace.socket_path), hello],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        user=65534,
        group=65534,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    data = bytes.fromhex(done.stdout.strip())
    return decode_reply(data[4:]) if data else None


def _open_to_others(workspace: Workspace) -> None:
    # Open the directory and socket to the other user, so only the uid check stands between
    # them and the daemon.
    workspace.socket_dir.chmod(0o755)
    workspace.socket_path.chmod(0o666)


@pytest.mark.skipif(os.getuid() != 0, reason="switching uid needs root")
def test_a_foreign_uid_is_refused(workspace: Workspace) -> None:
    workspace.start_daemon()
    _open_to_others(workspace)
    reply = _as_foreign_user(workspace)
    assert isinstance(reply, Error) and reply.code is ErrorCode.UNAUTHORIZED


@pytest.mark.skipif(os.getuid() != 0, reason="switching uid needs root")
def test_allowed_uids_admit_another_user(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"allowed_uids": [65534]}})
    workspace.start_daemon()
    _open_to_others(workspace)
    reply = _as_foreign_user(workspace)
    assert isinstance(reply, Welcome)


def test_a_second_daemon_is_refused_and_the_first_keeps_serving(workspace: Workspace) -> None:
    workspace.start_daemon()
    second = workspace.run("-m", "bgjobd", timeout=30)
    assert second.returncode == 1
    assert "already" in second.stderr
    with workspace.client() as client:
        job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        assert client.wait(job_id, 10).state is JobState.SUCCEEDED


def test_a_stale_socket_file_is_replaced(workspace: Workspace) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(workspace.socket_path))
    stale.close()  # the file stays, nobody listens
    workspace.start_daemon()
    with workspace.client() as client:
        client.ping()


def test_tcp_transport_needs_the_token(workspace: Workspace) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workspace.write_config({"daemon": {"transport": "tcp", "listen": f"127.0.0.1:{port}"}})
    workspace.start_daemon(ready=False)
    from bgjobctl.address import Address
    from bgjobctl.client import Client
    from bgjobs.errors import BgjobsError, ProtocolError
    from tests.support.waiting import wait_for

    token_file = workspace.storage / "bgjobd.token"
    wait_for(token_file.exists, what="the token file")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    def answers() -> bool:
        try:
            with Client(Address(host="127.0.0.1", port=port, token_path=token_file)) as c:
                c.ping()
        except BgjobsError:
            return False
        return True

    wait_for(answers, what="the TCP daemon")
    done = workspace.bgjobctl("submit", "Echo", "handle", "x", "--wait")
    assert done.returncode == 0, done.stderr
    wrong = workspace.root / "wrong"
    wrong.write_text("not-the-token")
    with (
        pytest.raises(ProtocolError, match="unauthorized"),
        Client(Address(host="127.0.0.1", port=port, token_path=wrong)) as client,
    ):
        client.ping()


def _token_of(path: str, start: Any) -> str:
    start.wait()
    return ensure_token(Path(path))


def test_a_token_is_never_seen_half_written_and_racing_starts_agree(tmp_path: Path) -> None:
    """Several daemons (and clients) at the token file at once: each reads one whole token,
    the same one, and no draft is left beside it."""
    path = tmp_path / "storage" / "bgjobd.token"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(6) as pool:
        start = manager.Barrier(6)
        tokens = pool.starmap(_token_of, [(str(path), start)] * 6, chunksize=1)
    assert len(set(tokens)) == 1 and len(tokens[0]) >= 32
    assert path.read_text().strip() == tokens[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["bgjobd.token"]
