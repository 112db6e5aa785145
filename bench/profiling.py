"""Profile bgjobs' hot paths under W2 and W1 with py-spy: where does the time go?

Starts a daemon as the benchmark does (2 warm workers, fsync off unless asked), records the
daemon and its workers (`py-spy record --subprocesses --nonblocking`) and, with a second
py-spy, this client process, while it runs W2 (timed `run_background_job()` calls) and W1
(no-op jobs until the daemon's stats count them done). Then it prints, per process role,
the daemon's samples by hot-path stage and the lines and functions with the most samples.
The raw stacks stay in --out (py-spy's collapsed format, for flamegraph.pl or speedscope).
Needs py-spy (`pip install py-spy`) and the right to ptrace (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import experiments, procs, workloads
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace

HOT_PATH: list[tuple[str, tuple[str, ...]]] = [
    # Stage, and the frames that put a sample in it. The deepest matching frame wins, so
    # "a log line written while claiming" counts as logging, not as claiming.
    ("frames in: read + decode + route", ("Connection.data_received", "decode_request")),
    ("submit: spec -> rows", ("build (bgjobd/submission.py", "check_allowed", "refusal")),
    ("store: INSERT job (+ count trigger)", ("SQLiteStore.add",)),
    ("store: COMMIT (group commit)", ("Journal.flush", "SQLiteStore.commit")),
    ("store: WAL checkpoint (its own thread)", ("_Checkpointer.",)),
    ("frames out: encode + write", ("Connection._send", "Connection._finish")),
    ("dispatch: slots + pump", ("Dispatcher.", "DueTimer.")),
    ("store: claim (SELECT + UPDATE)", ("SQLiteStore.claim",)),
    ("pool acquire/release", ("WorkerPool.", "Attempts.worker")),
    ("lock file create/remove", ("acquire (bgjobd/locks", "release (bgjobd/locks")),
    ("worker pipe send/receive", ("WorkerProcess.", "_ResultPipe.")),
    ("store: finish_attempt (UPDATE; + INSERT if not final)", ("SQLiteStore.finish_attempt",)),
    ("outcome rules + chains", ("record (bgjobd/outcomes", "_after_success", "release_next")),
    ("JobInfo built from a row", ("_row_to_job",)),
    ("log lines (format + write)", ("JobLog.", "describe_params", "format_line")),
    ("stats requests (the bench's poll)", ("collect (bgjobd/handlers/stats",)),
    ("event loop, tasks, other", ("Runner.run", "run (uvloop")),
]
ROLES = {"bgjobd.worker": "worker", "-m bgjobd": "daemon", "hotpaths.py": "client"}
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    """The samples of one process role: stack (outermost frame first) -> count."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)
    processes: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.stacks.values())


def parse(raw: Path, profiles: dict[str, Profile], default: str = "other") -> None:
    """py-spy's raw format: `process PID:"cmd";[process PID:"cmd";]frame;frame COUNT`."""
    for line in raw.read_text(errors="replace").splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        process = ""
        frames: list[str] = []
        for part in stack_text.split(";"):
            if part.startswith("process "):
                process = part  # the last one is the sampled process (a child's child...)
            else:
                frames.append(part)
        role = next((name for key, name in ROLES.items() if key in process), default)
        profile = profiles.setdefault(role, Profile())
        profile.processes.add(process.split(":", 1)[0])
        profile.stacks[tuple(frames)] += int(count)


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def top_self(profile: Profile, limit: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for stack, count in profile.stacks.items():
        if stack:
            counts[stack[-1]] += count
    return counts.most_common(limit)


def top_inclusive(profile: Profile, limit: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for stack, count in profile.stacks.items():
        for function in {_function(frame) for frame in stack}:
            counts[function] += count
    return counts.most_common(limit)


def stages(profile: Profile) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for stack, count in profile.stacks.items():
        stage = "unattributed"
        for frame in reversed(stack):
            found = next((name for name, keys in HOT_PATH if any(k in frame for k in keys)), None)
            if found is not None:
                stage = found
                break
        counts[stage] += count
    return counts.most_common()


def report(profiles: dict[str, Profile], limit: int) -> None:
    for role, profile in sorted(profiles.items()):
        total = profile.total or 1
        print(f"\n=== {role}: {profile.total} samples in {len(profile.processes)} process(es) ===")
        if role == "daemon":
            print("-- by hot-path stage (deepest matching frame) --")
            for stage, count in stages(profile):
                print(f"  {100 * count / total:5.1f}%  {stage}")
        print("-- self: the line executing --")
        for frame, count in top_self(profile, limit):
            print(f"  {100 * count / total:5.1f}%  {frame}")
        print("-- inclusive: the function on the stack --")
        for function, count in top_inclusive(profile, limit):
            print(f"  {100 * count / total:5.1f}%  {function}")


def _spy(
    pid: int, output: Path, args: argparse.Namespace, *, children: bool
) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--rate", str(args.rate)]
    command += ["--format", "raw", "--output", str(output)]
    if children:
        command.append("--subprocesses")
    # Native frames need the target paused per sample; otherwise do not pause it.
    command.append("--native" if args.native else "--nonblocking")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_spy(spy: subprocess.Popen[bytes]) -> None:
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    try:
        _, err = spy.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.communicate()
        return
    if spy.returncode not in (0, -signal.SIGINT) and err:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)


PHASES: Final = ("w2", "w2quiet", "w1")


def record(args: argparse.Namespace, out: Path) -> None:
    """Each phase under its own pair of py-spy recordings: PHASE-server.txt (the daemon
    and its workers) and PHASE-client.txt (this process)."""
    import redis

    counters = workloads.Counters(redis.Redis(), f"bgjobs-profile:{procs.MARKER[:12]}")
    workspace = Workspace("prof", fsync=args.fsync)
    daemon = Daemon(workspace)
    target: BgjobsTarget | None = None
    try:
        daemon.wait_ready()
        target = BgjobsTarget(daemon)
        for phase in args.phases:
            spies = [
                _spy(daemon.pid, out / f"{phase}-server.txt", args, children=True),
                _spy(os.getpid(), out / f"{phase}-client.txt", args, children=False),
            ]
            try:
                time.sleep(1.0)  # py-spy attaches
                print(f"{phase} under the profiler: {_run_phase(phase, target, counters, args)}")
            finally:
                for spy in spies:
                    _stop_spy(spy)
    finally:
        if target is not None:
            target.close()
        daemon.stop()
        workspace.remove()
        counters.cleanup()
        procs.sweep()


def _run_phase(
    phase: str, target: BgjobsTarget, counters: workloads.Counters, args: argparse.Namespace
) -> str:
    if phase == "w2":
        latency = workloads.w2_submit_latency(target, counters, args.submits)
        return f"p50 {latency.p50_us:.0f} µs, p99 {latency.p99_us:.0f} µs"
    if phase == "w2quiet":
        latency = workloads.w2_quiet_latency(target, args.submits)
        return f"p50 {latency.p50_us:.0f} µs, p99 {latency.p99_us:.0f} µs (nothing consuming)"
    w1 = workloads.w1_noop_throughput(target, counters, target.finished, args.jobs, idle=0.5)
    cpu = f"; {w1.cpu.per_job(w1.jobs)}" if w1.cpu else ""
    return f"{w1.per_second:,.0f} jobs/s ({w1.jobs:,} no-op jobs){cpu}"


EXPERIMENTS: Final = [
    ("as shipped", [], False),
    ("no lock files", ["nolocks"], False),
    ("no log lines", ["nolog"], False),
    ("no output capture (worker)", ["nocapture"], False),
    ("none of those three", ["nolocks", "nolog", "nocapture"], False),
    ("SQLite synchronous=OFF", ["syncoff"], False),
    ("storage on tmpfs", [], True),
]


@dataclass
class Trial:
    w1: float
    w2_p50: float
    w2_p99: float
    quiet_p50: float
    quiet_p99: float
    daemon_us: float
    workers_us: float
    others: float
    """Share of the machine that other processes used during W1 (0..1)."""

    def row(self) -> str:
        return (
            f"{self.w1:>10,.0f} {self.w2_p50:>7,.0f} {self.w2_p99:>7,.0f} {self.quiet_p50:>9,.0f}"
            f" {self.quiet_p99:>9,.0f} {self.daemon_us:>7,.0f} {self.workers_us:>8,.0f}"
            f" {100 * self.others:>6.0f}%"
        )


_HEADER: Final = (
    f"{'variant':<28} {'W1 jobs/s':>10} {'W2 p50':>7} {'W2 p99':>7} {'quiet p50':>9} "
    f"{'quiet p99':>9} {'daemon':>7} {'workers':>8} {'others':>7}"
    "   (µs; CPU µs per W1 job; others' share of the machine during W1)"
)
NOISY: Final = 0.10
"""Trials during which other processes used more of the machine are left out of medians."""


def _trial(
    args: argparse.Namespace, counters: workloads.Counters, patches: list[str], tmpfs: bool
) -> Trial:
    workspace = Workspace("exp", fsync=args.fsync, tmpfs=tmpfs)
    daemon = Daemon(workspace, experiments.environment(patches))
    target: BgjobsTarget | None = None
    try:
        daemon.wait_ready()
        target = BgjobsTarget(daemon)
        w2 = workloads.w2_submit_latency(target, counters, args.submits)
        quiet = workloads.w2_quiet_latency(target, args.submits)
        w1 = workloads.w1_noop_throughput(target, counters, target.finished, args.jobs, idle=0.5)
    finally:
        if target is not None:
            target.close()
        daemon.stop()
        workspace.remove()
    cpu = w1.cpu.seconds if w1.cpu else {"daemon": (0.0, 0.0), "workers": (0.0, 0.0)}
    others = 0.0
    if w1.cpu is not None:
        ours = sum(user + system for user, system in cpu.values())
        others = max(0.0, w1.cpu.machine_busy - ours) / (w1.cpu.wall * (os.cpu_count() or 1))
    return Trial(
        w1.per_second,
        w2.p50_us,
        w2.p99_us,
        quiet.p50_us,
        quiet.p99_us,
        1e6 * sum(cpu["daemon"]) / w1.jobs,
        1e6 * sum(cpu["workers"]) / w1.jobs,
        others,
    )


def run_experiments(args: argparse.Namespace) -> None:
    """W2 (consuming and quiet) and W1 no-op for each what-if variant of the daemon, with
    the daemon's and workers' CPU per job; `--repeat` rounds, variants interleaved, then
    the median of each figure: what each cost is worth."""
    import statistics

    import redis

    counters = workloads.Counters(redis.Redis(), f"bgjobs-exp:{procs.MARKER[:12]}")
    trials: dict[str, list[Trial]] = {label: [] for label, _, _ in EXPERIMENTS}
    print(_HEADER)
    try:
        for round_number in range(1, args.repeat + 1):
            for label, patches, tmpfs in EXPERIMENTS:
                procs.wait_for_quiet(timeout=30)
                trial = _trial(args, counters, patches, tmpfs)
                trials[label].append(trial)
                print(f"{label[:22] + f' #{round_number}':<28} {trial.row()}", flush=True)
        print(f"\nmedians of the trials with others <= {100 * NOISY:.0f}%:\n{_HEADER}")
        for label, every in trials.items():
            found = [t for t in every if t.others <= NOISY] or every
            median = Trial(
                *(
                    statistics.median(getattr(t, name) for t in found)
                    for name in Trial.__dataclass_fields__
                )
            )
            print(f"{label[:22] + f' ({len(found)})':<28} {median.row()}")
        count_per_job(args, counters)
    finally:
        counters.cleanup()
        procs.sweep()


def count_per_job(args: argparse.Namespace, counters: workloads.Counters) -> None:
    """Commits, statements, log lines and lock files per no-op job (W1), counted by the
    `count` patch in the daemon and printed by it at exit."""
    import ast

    workspace = Workspace("count", fsync=args.fsync)
    daemon = Daemon(workspace, experiments.environment(["count"]))
    target: BgjobsTarget | None = None
    try:
        daemon.wait_ready()
        target = BgjobsTarget(daemon)
        bound = target
        w1 = workloads.w1_noop_throughput(bound, counters, bound.finished, args.jobs, idle=0.5)
    finally:
        if target is not None:
            target.close()
        daemon.stop()
        text = daemon.log_path.read_text()
        workspace.remove()
    line = next((row for row in text.splitlines() if row.startswith("bench-counts ")), None)
    if line is None:
        print("per job: the daemon printed no counts")
        return
    counts = ast.literal_eval(line.removeprefix("bench-counts "))
    shown = ", ".join(f"{name} {value / w1.jobs:.2f}" for name, value in sorted(counts.items()))
    print(f"per no-op job in the daemon (W1, {w1.jobs:,} jobs): {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/hotpaths.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=250, help="samples per second (250)")
    parser.add_argument("--submits", type=int, default=1000, help="W2 calls (1000)")
    parser.add_argument("--jobs", type=int, default=10_000, help="W1 no-op jobs (10000)")
    parser.add_argument("--native", action="store_true", help="also sample C frames")
    parser.add_argument("--fsync", action="store_true", help="with [daemon] fsync = true")
    parser.add_argument("--top", type=int, default=25, help="rows per listing (25)")
    parser.add_argument("--out", default="/tmp/bgjobs-profile", help="where raw stacks go")
    parser.add_argument("--analyze", action="store_true", help="only analyze --out again")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="what to profile, each recorded apart: w2 (while consuming), w2quiet, w1",
    )
    parser.add_argument("--repeat", type=int, default=3, help="experiment rounds (3)")
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="instead of profiling: W1/W2 with one cost removed at a time (bench/experiments.py)",
    )
    parser.add_argument(
        "--micro", action="store_true", help="instead: per-operation costs (bench/micro.py)"
    )
    args = parser.parse_args(argv)
    if args.micro:
        from bench import micro

        micro.main()
        return 0
    args.phases = [phase for phase in args.phases.split(",") if phase]
    if set(args.phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.experiments:
        run_experiments(args)
        return 0
    out = Path(args.out)
    if not args.analyze:
        out.mkdir(parents=True, exist_ok=True)
        record(args, out)
    for phase in args.phases:
        profiles: dict[str, Profile] = {}
        for raw, role in ((f"{phase}-server.txt", "other"), (f"{phase}-client.txt", "client")):
            if (out / raw).exists():
                parse(out / raw, profiles, role)
        print(f"\n##### phase {phase} #####")
        report(profiles, args.top)
    return 0
