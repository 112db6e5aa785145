"""Finding 1 of issue 9, timed: an escaped (double-fork + setsid) grandchild against every
exit path of its attempt. Run from a checkout whose tests/testjobs has `containment.py`:

    cd CHECKOUT && timeout 600 ./.venv/bin/python bench/attacks/containment.py

Prints seconds per path. The grandchild sleeps GRANDCHILD seconds (the ceiling of "before").
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
os.environ["PYTHONPATH"] = os.getcwd()

from bgjobs.model import JobSpec
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

GRANDCHILD = 30
JOBS = {"Escape": ["handle"], "Echo": ["handle"]}


def space(extra: dict) -> Workspace:
    ws = Workspace(Path(tempfile.mkdtemp(prefix="measure-")))
    ws.write_config({"allowed_jobs": JOBS, **extra})
    return ws


def escape(ws: Workspace, name: str, then: str = "hang") -> JobSpec:
    return JobSpec(
        class_name="Escape", method="handle", params=[str(ws.root / name), GRANDCHILD, then]
    )


def timeout_path() -> float:
    ws = space({"jobs": {"Escape": {"timeout": 3}}})
    try:
        ws.start_daemon()
        client = ws.client()
        start = time.monotonic()
        job_id = client.submit([escape(ws, "g")]).ids[0]
        client.wait(job_id, 120)
        return time.monotonic() - start
    finally:
        ws.close()


def stubborn_timeout_path() -> float:
    """The job ignores SIGTERM: its worker dies only by SIGKILL after kill_grace (1 s)."""
    ws = space({"jobs": {"Escape": {"timeout": 3}}, "daemon": {"kill_grace": 1}})
    try:
        ws.start_daemon()
        client = ws.client()
        start = time.monotonic()
        job_id = client.submit([escape(ws, "g", "stubborn")]).ids[0]
        client.wait(job_id, 120)
        grandchild = int((ws.root / "g").read_text())
        wait_for(lambda: is_gone(grandchild), timeout=10)
        return time.monotonic() - start
    finally:
        ws.close()


def cancel_path() -> float:
    ws = space({})
    try:
        ws.start_daemon()
        client = ws.client()
        job_id = client.submit([escape(ws, "g")]).ids[0]
        wait_for((ws.root / "g").exists, timeout=20)
        start = time.monotonic()
        client.cancel(job_id)
        client.wait(job_id, 120)
        return time.monotonic() - start
    finally:
        ws.close()


def queued_path() -> float:
    ws = space({"jobs": {"Escape": {"timeout": 3}}})
    try:
        ws.start_daemon()
        client = ws.client()
        start = time.monotonic()
        client.submit([escape(ws, "g1"), escape(ws, "g2")])
        plain = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
        client.wait(plain, 120)
        return time.monotonic() - start
    finally:
        ws.close()


def sigterm_path() -> float:
    ws = space({"daemon": {"shutdown_timeout": 5}})
    try:
        daemon = ws.start_daemon()
        client = ws.client()
        client.submit([escape(ws, "g")])
        wait_for((ws.root / "g").exists, timeout=20)
        start = time.monotonic()
        daemon.signal(signal.SIGTERM)
        daemon.process.wait(120)
        return time.monotonic() - start
    finally:
        ws.close()


def sigkill_path() -> str:
    ws = space({})
    try:
        daemon = ws.start_daemon()
        client = ws.client()
        client.submit([escape(ws, "g")])
        wait_for((ws.root / "g").exists, timeout=20)
        grandchild = int((ws.root / "g").read_text())
        start = time.monotonic()
        daemon.kill()
        deadline = start + 10
        while time.monotonic() < deadline and not is_gone(grandchild):
            time.sleep(0.05)
        if is_gone(grandchild):
            return f"grandchild gone after {time.monotonic() - start:.2f}s"
        return "grandchild still alive 10s after the daemon's SIGKILL"
    finally:
        ws.close()


def returned_path() -> str:
    ws = space({"daemon": {"workers": 1}})
    try:
        ws.start_daemon()
        client = ws.client()
        job_id = client.submit([escape(ws, "g", "return")]).ids[0]
        client.wait(job_id, 120)
        grandchild = int((ws.root / "g").read_text())
        start = time.monotonic()
        plain = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
        client.wait(plain, 120)
        took = time.monotonic() - start
        alive = "alive" if not is_gone(grandchild) else "gone"
        return f"next job took {took:.2f}s; grandchild {alive} after the job returned"
    finally:
        ws.close()


if __name__ == "__main__":
    chosen = sys.argv[1:]
    for name, path in [
        ("timeout 3s, job ignores SIGTERM, kill_grace 1 -> recorded after", stubborn_timeout_path),
        ("timeout 3s -> recorded after", timeout_path),
        ("cancel -> cancelled after", cancel_path),
        ("plain job behind two (timeout 3s) -> done after", queued_path),
        ("SIGTERM, shutdown_timeout 5 -> exit after", sigterm_path),
        ("SIGKILL of the daemon", sigkill_path),
        ("job returns, grandchild sleeps", returned_path),
    ]:
        if chosen and path.__name__ not in chosen:
            continue
        value = path()
        shown = f"{value:.2f}s" if isinstance(value, float) else value
        print(f"{name}: {shown}", flush=True)
