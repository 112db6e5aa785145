"""SQL statements per job, this checkout's daemon against another revision's:
`bench/statements.py`. A count, so the machine's load does not blur it (unlike the
timings of bench/compare.py, which it explains).

    .venv/bin/python bench/statements.py --base f4ddbe6
    .venv/bin/python bench/statements.py --base f4ddbe6 --jobs 2000 --top 25

Each daemon runs with a `sitecustomize` that gives every SQLite connection it opens a
class counting the statements it executes (literals folded, so one statement's runs count
together; `executescript` not counted), written to a file at exit. Per checkout: one run
with `--jobs` no-op jobs submitted one `run_background_job()` call at a time (W1) and one
with none, each after the same warm-up and then `--idle` seconds with nothing to do; the
difference divided by `--jobs` is what a job costs. A third run with no jobs and no idle
time gives what an idle daemon runs per second. Statements the checkpoint thread runs count too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402

COUNTS_ENV: Final = "BGJOBS_BENCH_STATEMENTS"
WARM_UP: Final = 200
SITE: Final = f'''\
import os

if os.environ.get("{COUNTS_ENV}"):
    import atexit, collections, json, re, sqlite3

    _counts = collections.Counter()
    _literals = re.compile(r"'[^']*'|\\b\\d+(\\.\\d+)?(e[-+]?\\d+)?\\b|X'[0-9A-F]*'")
    _connect = sqlite3.connect

    class _Counting(sqlite3.Connection):
        # Each statement the code runs, once (a trace callback would also see each
        # trigger it fires, as the same text again).
        def execute(self, sql, *args):
            _counts[" ".join(_literals.sub("?", sql).split())] += 1
            return super().execute(sql, *args)

    def connect(*args, **kwargs):
        return _connect(*args, factory=_Counting, **kwargs)

    sqlite3.connect = connect

    def _dump():
        path = os.environ["{COUNTS_ENV}"] + f".{{os.getpid()}}"
        with open(path, "w") as file:
            json.dump(_counts, file)

    atexit.register(_dump)
'''


def _wait_finished(target: BgjobsTarget, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while (finished := target.finished()) is None or sum(finished) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {finished} of {count} jobs finished in {timeout}s")
        time.sleep(0.01)


def count(code: Path | None, site: Path, jobs: int, idle: float) -> Counter[str]:
    """The daemon's statements over warm-up, `jobs` W1 submits and `idle` seconds."""
    workspace = Workspace("stmt")
    counts_path = workspace.root / "statements"
    daemon = Daemon(
        workspace, env={COUNTS_ENV: str(counts_path), "PYTHONPATH": str(site)}, code=code
    )
    try:
        daemon.wait_ready()
        target = BgjobsTarget(daemon)
        config = str(workspace.config)
        for _ in range(WARM_UP + jobs):
            run_background_job("Noop", "handle", [], config=config, fallback="error")
        _wait_finished(target, WARM_UP + jobs)
        time.sleep(idle)  # what an idle daemon reads: counted, not waited on
        target.close()
        close_clients()
        daemon.stop()
        found = counts_path.with_name(f"{counts_path.name}.{daemon.pid}")
        return Counter(json.loads(found.read_text()))
    finally:
        daemon.stop()
        workspace.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle after the jobs")
    parser.add_argument("--top", type=int, default=20, help="statements listed per checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgb-base-") as directory:
        site = Path(directory) / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITE)
        base = Path(directory) / "bgjobs"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base],
            check=True,
        )
        try:
            totals: dict[str, float] = {}
            for label, code in (("base", base), ("this", None)):
                busy = count(code, site, 0, 0.0)
                empty = count(code, site, 0, args.idle)
                full = count(code, site, args.jobs, args.idle)
                per_job = {sql: (full[sql] - empty[sql]) / args.jobs for sql in full | empty}
                totals[label] = sum(per_job.values())
                idle_rate = (sum(empty.values()) - sum(busy.values())) / args.idle
                print(
                    f"\n{label} ({args.base if code else 'this checkout'}): "
                    f"{totals[label]:.2f} statements per job; idle, about {idle_rate:.0f}/s"
                )
                ranked = sorted(per_job.items(), key=lambda item: -item[1])[: args.top]
                for sql, per in ranked:
                    print(f"  {per:6.2f}  {sql[:150]}")
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False
            )
    print(f"\nstatements per job: base {totals['base']:.2f}, this {totals['this']:.2f}")
    return 0


if __name__ == "__main__":
    os.environ.pop(COUNTS_ENV, None)
    sys.exit(main())
