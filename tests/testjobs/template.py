"""Jobs that show where a worker imported its jobs package: in a template it was forked
from, or itself."""

from __future__ import annotations

import os
import random

IMPORTED_BY = os.getpid()
"""The process that imported this module: a forked worker's template, or the worker."""


class Imported:
    def handle(self) -> dict[str, object]:
        return {"pid": os.getpid(), "imported_by": IMPORTED_BY, "random": random.random()}
