#!/usr/bin/env python3
"""Run the bgjobs benchmark: `.venv/bin/python bench/run.py [--quick] [--fsync]
[--only W1,W2] [--systems bgjobs,huey-redis]` from the repository's root (bench/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    # Run as a script, `bench` is not importable yet: put the repository first on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.suite import main as run_suite

    return run_suite(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
