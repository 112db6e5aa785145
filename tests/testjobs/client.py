"""Jobs for the client and idempotency tests: each run leaves a line, so runs can be counted."""

from __future__ import annotations

import os
import time
from pathlib import Path


class Token:
    """Appends `token` to a file (one write, so concurrent runs never mix lines) after
    `seconds`, or once the file `gate` exists."""

    def handle(self, path: str, token: str, seconds: float | str = 0, gate: str = "") -> str:
        time.sleep(float(seconds))
        while gate and not Path(gate).exists():
            time.sleep(0.01)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{token}\n".encode())
        finally:
            os.close(fd)
        return token
