"""Jobs for the size tests: large results, floods of output."""

from __future__ import annotations

import os
import subprocess


class BigResult:
    def handle(self, size: int | str) -> str:
        return "r" * int(size)


class Flood:
    def handle(self, size: int | str) -> str:
        """Print a first line, `size` bytes from a grandchild (through a shell), and a last
        line: the head and the tail of what an attempt printed."""
        os.write(1, b"FIRST-LINE\n")
        subprocess.run(
            ["sh", "-c", f"yes 0123456789abcdef | head -c {int(size)}"],
            check=True,
        )
        print("LAST-LINE", flush=True)
        return "flooded"


class Stubborn:
    def handle(self, size: int | str, seconds: float | str) -> None:
        """Print `size` bytes, then ignore SIGTERM and sleep: only SIGKILL ends it."""
        import signal
        import time

        os.write(1, b"s" * int(size))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(float(seconds))
