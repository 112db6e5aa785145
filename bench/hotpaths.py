#!/usr/bin/env python3
"""Profile bgjobs under W2 and W1 with py-spy: `.venv/bin/python bench/hotpaths.py
[--rate 250] [--jobs 10000] [--native] [--fsync] [--out DIR] [--analyze]` (bench/profiling.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    # Run as a script, `bench` is not importable yet: put the repository first on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.profiling import main as profile

    return profile(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
