from __future__ import annotations

import asyncio
import builtins
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bgjobs


class Echo:
    def handle(self, *args: Any) -> list[Any]:
        return list(args)

    def _secret(self) -> str:
        return "never"


class AsyncEcho:
    async def handle(self, value: Any) -> Any:
        await asyncio.sleep(0)
        return value


class Sleep:
    def handle(self, seconds: float | str, marker: str = "") -> float:
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(float(seconds))
        return float(seconds)


class Fail:
    def handle(self, message: str = "boom") -> None:
        raise ValueError(message)


class Raise:
    """Raises the named exception class (a builtin, or `module.Class`)."""

    def handle(self, name: str, message: str = "raised on purpose") -> None:
        if "." in name:
            module_name, _, class_name = name.rpartition(".")
            module = __import__(module_name, fromlist=[class_name])
            raise getattr(module, class_name)(message)
        raise getattr(builtins, name)(message)


class Crash:
    def handle(self, how: str = "exit") -> None:
        sys.stdout.flush()
        if how == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(3)


class Flaky:
    """Fails until it has been called `failures` times (counted in a file), then returns."""

    def handle(self, counter: str, failures: int | str) -> int:
        path = Path(counter)
        calls = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(calls))
        with Path(counter + ".times").open("a") as times:
            times.write(f"{time.time()}\n")
        if calls <= int(failures):
            raise ConnectionRefusedError(f"call {calls} refused")
        return calls


class SpawnGrandchild:
    """Starts a long `sleep` child, records both pids, then sleeps itself."""

    def handle(self, pid_file: str, seconds: float | str = 60) -> None:
        child = subprocess.Popen(["sleep", "300"])
        Path(pid_file).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(float(seconds))


class Record:
    """Appends `value` to a file: the order of lines is the order jobs ran in."""

    def handle(self, path: str, value: str, hold: float | str = 0) -> str:
        with Path(path).open("a") as handle:
            handle.write(f"start {value} {time.time()}\n")
        time.sleep(float(hold))
        with Path(path).open("a") as handle:
            handle.write(f"end {value} {time.time()}\n")
        return value


class Add:
    def handle(self, previous: Any, amount: Any = 1) -> float:
        return float(previous) + float(amount)


class Printer:
    def handle(self, text: str) -> str:
        print(f"out: {text}")
        print(f"err: {text}", file=sys.stderr)
        subprocess.run(["echo", f"child: {text}"], check=True)
        return text


class SelfDecides:
    def retry(self, counter: str, delay: float | str = 0.1) -> int:
        path = Path(counter)
        calls = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(calls))
        raise bgjobs.Retry("not yet", delay=float(delay))

    def fail(self, reason: str = "hopeless") -> None:
        raise bgjobs.Fail(reason)


class Unencodable:
    def handle(self) -> object:
        return object()


class Chatty:
    def handle(self, text: str, seconds: float | str = 0) -> None:
        print(text, flush=True)
        time.sleep(float(seconds))

    def fail(self, text: str) -> None:
        print(text)
        raise RuntimeError(text)
