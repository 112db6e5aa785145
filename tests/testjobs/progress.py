"""Test jobs that report progress and print while they run, held at a gate file the test
opens, so that the test sees them running for as long as it needs."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import bgjobs

GATE_WAIT = 30.0
"""Seconds a job waits for its gate before it gives up (and fails): a test that forgot to
open it does not leave a job running."""


def _wait_for_gate(gate: str) -> None:
    deadline = time.monotonic() + GATE_WAIT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.02)


class Reporting:
    def halfway(self, gate: str, message: str = "imported 4,000 rows") -> str:
        """Reports 0.4 with `message`, waits at the gate, reports 1.0, returns."""
        bgjobs.progress(0.4, message)
        _wait_for_gate(gate)
        bgjobs.progress(1.0, "done")
        return "finished"

    def steps(self, gates: str, count: int) -> int:
        """Reports step/count with "step N of COUNT" for each step from 1, waiting at the
        gate file `gates/N` after each; returns once the last gate opened."""
        for step in range(1, count):
            bgjobs.progress(step / count, f"step {step} of {count}")
            _wait_for_gate(str(Path(gates) / str(step)))
        return count

    def burst(self, count: int) -> bool:
        """`count` updates as fast as it can; the last one is (1.0, "last")."""
        for step in range(count - 1):
            bgjobs.progress(step / count, f"step {step}")
        return bgjobs.progress(1.0, "last")

    def refused(self) -> list[str]:
        """What the bad calls raise (each must raise, none reaches the daemon)."""
        raised = []
        for fraction in (math.nan, math.inf, -math.inf, "0.5", None, True):
            try:
                bgjobs.progress(fraction)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raised.append(type(exc).__name__)
        try:
            bgjobs.progress(0.5, 42)  # type: ignore[arg-type]
        except TypeError as exc:
            raised.append(type(exc).__name__)
        return raised

    def clamped(self, gate: str) -> None:
        """Reports 7.5 with a long message full of control characters, waits at the gate."""
        bgjobs.progress(7.5, "\x1b[31mred\x1b[0m " + "x" * 1000)
        _wait_for_gate(gate)

    def forked(self, gate: str) -> int:
        """A forked child reports (it must not reach the worker's pipe); the worker then
        reports 0.25 and waits at the gate."""
        pid = os.fork()
        if pid == 0:
            try:
                bgjobs.progress(0.9, "from the child")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        bgjobs.progress(0.25, "from the worker")
        _wait_for_gate(gate)
        return 0


class Talker:
    def handle(self, gate: str) -> str:
        """Prints a line, waits at the gate, prints another, returns."""
        print("first line, before the gate", flush=True)
        _wait_for_gate(gate)
        print("second line, after the gate", flush=True)
        return "talked"
