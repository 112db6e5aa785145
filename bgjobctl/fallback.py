"""When no daemon answers: run the job with `run_job.py`, fully detached, and return.

The runner starts in a new session (a new process group on Windows) with no inherited
pipes, so neither the caller's exit nor its terminal can stop it; a thread reaps it, so it
never lingers as a zombie. Nothing here waits for it unless the caller asks.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime

import msgspec

from bgjobs.model import JobSpec


def runner_command(spec: JobSpec, config_path: str | None) -> list[str]:
    """`run_job.py`'s command line for the spec; typed parameters and chains travel whole
    as `--spec-json`."""
    if spec.run_at is not None:
        delay = max(0.0, (spec.run_at - datetime.now(UTC)).total_seconds())
        spec = msgspec.structs.replace(spec, run_at=None, delay=delay)
    command = [sys.executable, "-m", "bgjobd.oneshot"]
    if config_path:
        command += ["--config", config_path]
    return [
        *command,
        "--spec-json",
        msgspec.json.encode(spec).decode(),
        spec.class_name,
        spec.method,
    ]


def spawn_detached(spec: JobSpec, config_path: str | None) -> subprocess.Popen[bytes]:
    command = runner_command(spec, config_path)
    quiet = subprocess.DEVNULL
    if sys.platform == "win32":
        flags = (
            subprocess.DETACHED_PROCESS
            | subprocess.CREATE_NEW_PROCESS_GROUP
            | subprocess.CREATE_NO_WINDOW
        )
        process = subprocess.Popen(
            command, stdin=quiet, stdout=quiet, stderr=quiet, close_fds=True, creationflags=flags
        )
    else:
        process = subprocess.Popen(
            command,
            stdin=quiet,
            stdout=quiet,
            stderr=quiet,
            close_fds=True,
            start_new_session=True,
        )
    threading.Thread(target=process.wait, name="bgjobs-fallback-reaper", daemon=True).start()
    return process
