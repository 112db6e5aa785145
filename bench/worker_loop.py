"""One worker process alone, driven over its two pipes: its CPU per attempt.

    .venv/bin/python bench/worker_loop.py                       # this checkout's worker
    .venv/bin/python bench/worker_loop.py --base a3e002d        # and another's, interleaved

A real worker (`python -m bgjobd.worker`) of each checkout gets `Setup`, then `--attempts`
no-op attempts one after the other, each sent as the daemon sends it and answered by
`Started` and `AttemptDone`. Printed: the worker's CPU (user + system, from /proc) and the
wall time per attempt, medians of `--rounds` interleaved rounds. No daemon, store or
client is involved, so this isolates what the worker does around a job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402

from bench import procs  # noqa: E402
from bgjobd.worker.messages import AttemptDone, FromWorker, RunAttempt, Setup  # noqa: E402
from bgjobs.protocol import FrameEncoder, FrameReader  # noqa: E402


def measure(
    code: Path, attempts: int, storage: Path, strace: Path | None = None
) -> tuple[float, float]:
    """CPU µs and wall µs per attempt of one fresh worker from `code` (with `strace`: its
    system calls counted into that file, and the CPU figure is strace's own)."""
    command_read, command_write = os.pipe()
    result_read, result_write = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(code), "BGJOBS_CGROUPS": "off"}
    tracer = ["strace", "-f", "-qq", "-c", "-o", str(strace)] if strace else []
    worker = subprocess.Popen(
        [*tracer, sys.executable, "-m", "bgjobd.worker", str(command_read), str(result_write)],
        pass_fds=(command_read, result_write),
        cwd=str(code),
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(command_read)
    os.close(result_write)
    encoder, reader = FrameEncoder(), FrameReader()
    decode = msgspec.msgpack.Decoder(FromWorker).decode
    pending: list[bytes] = []

    def receive() -> FromWorker:
        while not pending:
            pending.extend(reader.feed(os.read(result_read, 65536)))
        return decode(pending.pop(0))

    locks, output = storage / "jobs", storage / "logs" / "jobs"
    locks.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    setup = Setup(
        jobs_package="benchjobs", base_dir=str(storage.parent), allowed_jobs={"Noop": ["handle"]}
    )
    os.write(command_write, encoder.encode(setup))
    receive()  # Ready

    def attempt(job_id: int) -> None:
        request = RunAttempt(
            job_id=job_id,
            attempt=1,
            class_name="Noop",
            method="handle",
            params=[],
            output_path=f"{output}/{job_id}.log",
            lock_path=f"{locks}/Noop_handle_{job_id}.lock",
            owner="bench",
            max_output_bytes=10 << 20,
            max_result_bytes=1 << 20,
        )
        os.write(command_write, encoder.encode(request))
        while not isinstance(receive(), AttemptDone):
            pass

    for job_id in range(200):  # warm-up
        attempt(job_id)
    cpu_before, wall_before = sum(procs.cpu_seconds(worker.pid)), time.perf_counter()
    for job_id in range(200, 200 + attempts):
        attempt(job_id)
    cpu = sum(procs.cpu_seconds(worker.pid)) - cpu_before
    wall = time.perf_counter() - wall_before
    os.close(command_write)
    worker.wait(10)
    os.close(result_read)
    return cpu / attempts * 1e6, wall / attempts * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=3000)
    parser.add_argument("--strace", action="store_true", help="count system calls instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgb-worker-") as directory:
        root = Path(directory)
        (root / "benchjobs").symlink_to(REPO / "bench" / "jobs")
        codes = {"this": REPO}
        if args.base:
            codes["base"] = root / "base"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(REPO),
                    "worktree",
                    "add",
                    "--detach",
                    "-q",
                    str(codes["base"]),
                    args.base,
                ],
                check=True,
            )
        figures: dict[str, list[tuple[float, float]]] = {label: [] for label in codes}
        try:
            for round_number in range(1, args.rounds + 1):
                for label, code in sorted(codes.items()):
                    storage = root / f"storage-{label}-{round_number}"
                    counted = root / f"strace-{label}-{round_number}" if args.strace else None
                    cpu, wall = measure(code, args.attempts, storage, counted)
                    if counted is not None:
                        print(f"--- {label}: system calls\n{counted.read_text()}")
                    figures[label].append((cpu, wall))
                    print(
                        f"round {round_number} {label:4}  worker CPU {cpu:6.1f} µs/attempt, "
                        f"wall {wall:6.1f} µs",
                        flush=True,
                    )
        finally:
            if args.base:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(codes["base"])],
                    check=False,
                )
    print(f"\nmedians of {args.rounds} rounds:")
    for label, runs in sorted(figures.items()):
        cpu = statistics.median(run[0] for run in runs)
        wall = statistics.median(run[1] for run in runs)
        print(f"  {label:4}  worker CPU {cpu:6.1f} µs/attempt, wall {wall:6.1f} µs/attempt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
