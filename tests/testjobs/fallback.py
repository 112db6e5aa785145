"""A chain link for the fallback tests: leaves a line per run, like `Token`."""

from __future__ import annotations

import os


class Then:
    """Appends `token` to the file at `path` and returns the chain's tokens so far."""

    def handle(self, previous: str, path: str, token: str) -> str:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{token}\n".encode())
        finally:
            os.close(fd)
        return f"{previous},{token}"
