"""The procrastinate application of the benchmark:
`procrastinate --app=bench.peers.procrastinate_app.app worker`.

Its connection string comes from `$BENCH_PROCRASTINATE_DSN` (with the run's schema first
on the search path), so the workers and the benchmark's client build the same app. The
tasks call the same job classes as bgjobs' workers (bench/jobs)."""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from bench.jobs import Incr, Late, Noop, SleepIncr

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", "")))


@app.task(name="noop")
def noop() -> None:
    Noop().handle()


@app.task(name="incr")
def incr(key: str) -> None:
    Incr().handle(key)


@app.task(name="late")
def late(path: str, due: float) -> None:
    Late().handle(path, due)


@app.task(name="sleep_incr")
def sleep_incr(seconds: float, key: str) -> None:
    SleepIncr().handle(seconds, key)
