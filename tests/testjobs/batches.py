"""Jobs of the batch tests: members that may wait for a gate, and a callback that leaves a
line per call in a token file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class Square:
    """`n * n`, once the gate file exists (at once without a gate)."""

    def handle(self, n: int | str, gate: str = "") -> int:
        deadline = time.monotonic() + 60
        while gate and not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no gate {gate}")
            time.sleep(0.02)
        return int(n) * int(n)


class BatchCallback:
    """Appends one line (the results, as JSON) to `token` per call; returns their sum."""

    def handle(self, results: list[Any], token: str) -> int:
        with Path(token).open("a") as file:
            file.write(json.dumps(results) + "\n")
        return sum(value for value in results if value is not None)
