"""Where a running attempt's captured output lives: for the worker that writes it and the
daemon that serves it (`GetOutput`) while the attempt runs."""

from __future__ import annotations

from pathlib import Path


def scratch_path(directory: Path, worker_pid: int) -> Path:
    """The worker's file for the attempt it is running; it becomes `<id>.log` at its end."""
    return directory / f".worker-{worker_pid}.out"
