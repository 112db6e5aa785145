"""Before/after figures for issue 9 findings 3 and 6. Run with cwd and PYTHONPATH = a checkout."""

from __future__ import annotations

import os
import socket
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import msgspec

from bgjobs.model import JobSpec
from bgjobs.protocol import PROTOCOL_VERSION, Hello, Submit
from tests.dashboard.support import free_port
from tests.support.workspace import Workspace

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def space() -> Workspace:
    return Workspace(Path(tempfile.mkdtemp(prefix="measure-")))


def nan_retry() -> None:
    ws = space()
    try:
        ws.write_config(
            {
                "allowed_jobs": {"RetryIn": ["handle"]},
                "jobs": {"RetryIn": {"retry_attempts": 1}},
            }
        )
        daemon = ws.start_daemon()
        client = ws.client()
        job = client.submit([JobSpec(class_name="RetryIn", method="handle", params=["nan"])]).ids[0]
        echo = client.submit([JobSpec(class_name="Echo", method="handle", delay=1.0)]).ids[0]
        time.sleep(1.0)
        before = cpu_seconds(daemon.pid)
        time.sleep(5.0)
        used = cpu_seconds(daemon.pid) - before
        print(f"NaN retry: daemon CPU over 5 s = {used / 5 * 100:.0f} %")
        print(
            f"NaN retry: job state {client.get(job).state.value}, "
            f"errors {[a.error.type for a in client.get(job).history if a.error]}"
        )
        print(f"NaN retry: Echo scheduled 1 s ahead is {client.get(echo).state.value} after 6 s")
        for value in ["inf", "1e308", "-1"]:
            jid = client.submit(
                [JobSpec(class_name="RetryIn", method="handle", params=[value])]
            ).ids[0]
            try:
                got = client.wait(jid, 10)
                print(
                    f"Retry(delay={value}): {got.state.value}, errors "
                    f"{[a.error.type + ': ' + a.error.message[:60] for a in got.history if a.error]}"
                )
            except Exception as exc:  # noqa: BLE001
                print(f"Retry(delay={value}): {type(exc).__name__}: {exc}")
    finally:
        ws.close()


def text_jobs() -> None:
    ws = space()
    try:
        port = free_port()
        ws.write_config(
            {
                "allowed_jobs": {
                    "Surrogates": ["error", "printed", "result"],
                    "Controls": ["handle"],
                },
                "dashboard": {"enabled": True, "listen": f"127.0.0.1:{port}"},
            }
        )
        daemon = ws.start_daemon()
        client = ws.client()
        for method in ("error", "printed", "result"):
            jid = client.submit([JobSpec(class_name="Surrogates", method=method)]).ids[0]
            job = client.wait(jid, 20)
            err = f"{job.error.type}: {job.error.message[:50]!r}" if job.error else ""
            print(f"Surrogates.{method}: {job.state.value} {err}")
        jid = client.submit(
            [JobSpec(class_name="Controls", method="handle", params=["p\x9b\u202e"])]
        ).ids[0]
        client.wait(jid, 20)
        try:
            client.submit([JobSpec(class_name="C" * 1_000_000, method="handle")])
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.5)
        logs = ws.log() + ws.error_log()
        print(
            f"log files: raw U+009B {logs.count(chr(0x9B))}, raw U+202E {logs.count(chr(0x202E))}, "
            f"raw ESC {logs.count(chr(0x1B))}"
        )
        print(f"log files: longest line {max(len(l) for l in logs.splitlines())} characters")
        for needle in ["99999999999999999999999", "²", "-1", "%", "_", "'"]:
            url = f"http://127.0.0.1:{port}/api/jobs?q={urllib.parse.quote(needle)}"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            done = ws.bgjobctl("list", "--search", needle)
            print(
                f"search {needle!r}: dashboard HTTP {status}, bgjobctl list exit {done.returncode}"
                f" {done.stderr.strip()[-60:]!r}"
            )
        hello = msgspec.msgpack.encode(Hello(version=PROTOCOL_VERSION))
        submit = msgspec.msgpack.encode(
            Submit(jobs=[JobSpec(class_name="Echo", method="handle", params=[7])])
        )
        at = submit.index(b"\x91\x07")
        deep = submit[:at] + b"\x91" * 100_000 + b"\x07" + submit[at + 2 :]
        for _ in range(5):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(ws.socket_path))
                sock.sendall(struct.pack(">I", len(hello)) + hello)
                sock.recv(65536)
                sock.sendall(struct.pack(">I", len(deep)) + deep)
                try:
                    reply = sock.recv(65536)
                except OSError as exc:
                    reply = repr(exc).encode()
        time.sleep(0.3)
        print(
            f"nested msgpack x5: last reply {reply[4:80]!r}; daemon stderr tracebacks "
            f"{daemon.stderr.count('Traceback')}, stderr lines {len(daemon.stderr.splitlines())}"
        )
    finally:
        ws.close()


def submits() -> None:
    ws = space()
    try:
        ws.start_daemon()
        for delay in ["nan", "inf", "-1", "1e308"]:
            done = ws.bgjobctl("submit", "Echo", "handle", f"--delay={delay}")
            print(
                f"bgjobctl submit --delay {delay}: exit {done.returncode} {done.stderr.strip()[-70:]!r}"
            )
        client = ws.client()
        for delay in [float("nan"), 1e308]:
            try:
                client.submit([JobSpec(class_name="Echo", method="handle", delay=delay)])
                print(f"raw Submit delay={delay}: accepted")
            except Exception as exc:  # noqa: BLE001
                print(f"raw Submit delay={delay}: {type(exc).__name__}: {str(exc)[:70]}")
        try:
            print(f"jobs stored after the bad submits: {client.list_jobs().total}")
        except Exception as exc:  # noqa: BLE001
            print(f"list after the bad submits: {type(exc).__name__}: {str(exc)[:90]}")
    finally:
        ws.close()


def config_and_backoff() -> None:
    from bgjobd.retries import RetryPolicy
    from bgjobs.config import parse_settings

    for text in [
        "retry_delay_seconds = inf",
        "max_execution_time = nan",
        "[daemon]\nkill_grace = inf",
    ]:
        try:
            parse_settings(text)
            print(f"config {text!r}: accepted")
        except Exception as exc:  # noqa: BLE001
            print(f"config {text!r}: {exc}")
    try:
        print(
            f"backoff attempt 2000: {RetryPolicy(3000, 5.0, 'exponential', None, False).delay_after(2000)}"
        )
    except Exception as exc:  # noqa: BLE001
        print(f"backoff attempt 2000: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.setrecursionlimit(10_000)
    for part in sys.argv[1:] or ["config_and_backoff", "submits", "text_jobs", "nan_retry"]:
        globals()[part]()
