"""Start-up cost of tracing: `python -m bgjobctl ping` against a running daemon, and a
worker's start (spawned until it reports Ready, then told to exit): the median of N runs'
wall time and CPU time (user + system, steadier than wall time on a busy machine), and the
modules each has loaded, OpenTelemetry's among them. The test jobs are always this
checkout's (`LoadedModules` counts a worker's modules).

    .venv/bin/python bench/otel_startup.py [--runs 30] [--repo PATH] [--tracing]

`--repo` measures another checkout (e.g. the code before tracing, in a temporary worktree)
with this interpreter; `--tracing` starts the workers with `[tracing] enabled` and the
tests' setup hook (an SDK tracer provider), to see what turning it on costs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repo", type=Path, default=HERE)
    parser.add_argument("--tracing", action="store_true")
    args = parser.parse_args()
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("BGJOBS_CONFIG", None)
    with tempfile.TemporaryDirectory(prefix="bgb-otel-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "testjobs").symlink_to(HERE / "tests" / "testjobs")
        config = root / "bgjobs.toml"
        tracing = '[tracing]\nenabled = true\nsetup = "testjobs.tracing:export_to_file"\n'
        config.write_text(
            f'jobs_package = "testjobs"\n[daemon]\nsocket = "{root}/d.sock"\nworkers = 1\n'
            "[dashboard]\nenabled = false\n" + (tracing if args.tracing else "")
        )
        env["BGJOBS_CONFIG"] = str(config)
        wall, cpu, modules = _ping(root, config, env, args.runs)
        print(f"ping: wall {wall:.1f} ms, cpu {cpu:.1f} ms, {modules}")
        wall, cpu, modules = _worker_start(repo, root, env, args.runs, tracing=args.tracing)
        print(f"worker start to Ready: wall {wall:.1f} ms, cpu {cpu:.1f} ms, {modules}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _imports(stderr: str) -> str:
    names = [
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if "import time:" in line
    ]
    names = names[1:]  # the header line
    otel = sum(name.lstrip().startswith("opentelemetry") for name in names)
    return f"{len(names)} modules imported ({otel} of opentelemetry)"


def _ping(root: Path, config: Path, env: dict[str, str], runs: int) -> tuple[float, float, str]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bgjobd", "--config", str(config)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ping = [sys.executable, "-m", "bgjobctl", "ping"]
        deadline = time.monotonic() + 20
        while (
            subprocess.run(ping, check=False, cwd=root, env=env, capture_output=True).returncode
            != 0
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not answer")
        times, cpu = [], []
        for _ in range(runs):
            started, cpu_before = time.perf_counter(), _children_cpu()
            subprocess.run(ping, cwd=root, env=env, capture_output=True, check=True)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append(_children_cpu() - cpu_before)
        profiled = [sys.executable, "-X", "importtime", "-m", "bgjobctl", "ping"]
        traced = subprocess.run(
            profiled, check=False, cwd=root, env=env, capture_output=True, text=True
        )
        return statistics.median(times), statistics.median(cpu), _imports(traced.stderr)
    finally:
        daemon.terminate()
        daemon.wait(20)


def _worker_start(
    repo: Path, root: Path, env: dict[str, str], runs: int, *, tracing: bool
) -> tuple[float, float, str]:
    # The checkout's own message types, whatever their fields.
    sys.path.insert(0, str(repo))
    import msgspec

    from bgjobd.worker.messages import AttemptDone, FromWorker, Ready, RunAttempt, Setup
    from bgjobs.protocol import FrameEncoder, FrameReader

    fields = {
        "jobs_package": "testjobs",
        "base_dir": str(root),
        "allowed_jobs": {"LoadedModules": ["handle"]},
    }
    if tracing:
        fields |= {"tracing": True, "tracing_setup": "testjobs.tracing:export_to_file"}
    setup = FrameEncoder().encode(Setup(**fields))  # type: ignore[arg-type]
    decoder = msgspec.msgpack.Decoder(FromWorker)
    env = {**env, "BGJOBS_STORAGE": str(root)}
    times, cpu = [], []
    count = RunAttempt(
        job_id=1,
        attempt=1,
        class_name="LoadedModules",
        method="handle",
        params=[],
        output_path=str(root / "1.log"),
        lock_path=str(root / "1.lock"),
        owner="bench",
    )
    modules = ""
    for run in range(runs + 1):
        counted = run == runs  # one more run that counts its modules (not timed)
        cpu_before = _children_cpu()
        command_read, command_write = os.pipe()
        result_read, result_write = os.pipe()
        started = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "-m", "bgjobd.worker", str(command_read), str(result_write)],
            pass_fds=(command_read, result_write),
            cwd=root,
            env=env,
        )
        os.close(command_read)
        os.close(result_write)
        os.write(command_write, setup)
        reader = FrameReader()
        frames: list[bytes] = []
        while not frames:
            frames = reader.feed(os.read(result_read, 65536))
        assert isinstance(decoder.decode(frames[0]), Ready)
        wall = (time.perf_counter() - started) * 1000
        if counted:
            os.write(command_write, FrameEncoder().encode(count))
            while not any(isinstance(message, AttemptDone) for message in frames):
                frames += [decoder.decode(f) for f in reader.feed(os.read(result_read, 65536))]
            done = frames[-1]
            assert isinstance(done, AttemptDone), done
            modules = f"{done.result[0]} modules loaded ({done.result[1]} of opentelemetry)"
        os.close(command_write)
        worker.wait(10)
        os.close(result_read)
        if not counted:
            times.append(wall)
            cpu.append(_children_cpu() - cpu_before)
    return statistics.median(times), statistics.median(cpu), modules


if __name__ == "__main__":
    main()
