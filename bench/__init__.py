"""The bgjobs benchmark suite: `python bench/run.py --help` (see bench/README.md)."""
