"""Applies the benchmark's what-if patches (bench/experiments.py) at interpreter start; only
on PYTHONPATH for the experiments' daemons and workers."""

import os

if os.environ.get("BGJOBS_BENCH_PATCHES"):
    from bench.experiments import apply_from_environment

    apply_from_environment()
