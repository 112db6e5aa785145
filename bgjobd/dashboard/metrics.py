"""`/metrics` in the Prometheus text format, from a registry of the dashboard's own (the
global one would mix in whatever else the process imported, and collide across tests).

Attempt counters and durations are fed by an attempt listener; job counts, queue
depth and workers are read from the store and the pool at scrape time, so they are true
even for jobs that `run_job.py` wrote to the same store.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from bgjobd.attempts import AttemptResult
from bgjobd.service import QueueService
from bgjobs.model import JobInfo, JobState, Outcome

DURATION_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0
)  # fmt: skip
"""Jobs run from milliseconds to the default five-minute limit and beyond."""

FAILED_OUTCOMES: Final = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.CRASHED})
"""Attempts that count as failures: the job's fault, not a cancel or a daemon shutdown."""


class _LiveState:
    """Gauges computed when Prometheus scrapes."""

    def __init__(self, service: QueueService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        counts = service.counts()
        jobs = GaugeMetricFamily("bgjobs_jobs", "Jobs in the store by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "bgjobs_queue_depth",
            "Jobs that are due and wait for a free worker.",
            value=counts.get(JobState.QUEUED, 0),
        )
        yield GaugeMetricFamily(
            "bgjobs_workers", "Worker processes of the daemon.", value=service.worker_count
        )
        yield GaugeMetricFamily(
            "bgjobs_workers_busy", "Workers running an attempt now.", value=service.busy
        )
        yield from _per_queue(service)
        yield from _per_rate(service)
        paused = GaugeMetricFamily(
            "bgjobs_paused",
            "1 for each pause in force (kind: all, class or queue; name: the class or queue).",
            labels=["kind", "name"],
        )
        for pause in service.pauses():
            paused.add_metric([pause.kind.value, pause.name], 1)
        yield paused
        yield GaugeMetricFamily(
            "bgjobs_uptime_seconds",
            "Seconds since the daemon started.",
            value=time.time() - service.started_at,
        )


def _per_queue(service: QueueService) -> Iterator[Metric]:
    """Each queue's jobs waiting and running (on every node), and this node's workers."""
    stats = service.queue_stats()
    running = collections.Counter(job.queue for job in service.running())
    jobs = GaugeMetricFamily(
        "bgjobs_queue_jobs",
        "Jobs of each queue waiting for a worker (queued) or running, on every node.",
        labels=["queue", "state"],
    )
    workers = GaugeMetricFamily(
        "bgjobs_queue_workers", "This daemon's workers for each queue.", labels=["queue"]
    )
    busy = GaugeMetricFamily(
        "bgjobs_queue_workers_busy",
        "This daemon's workers of each queue running an attempt now.",
        labels=["queue"],
    )
    for queue in sorted({stat.name for stat in stats} | set(running)):
        stat = next((stat for stat in stats if stat.name == queue), None)
        jobs.add_metric([queue, JobState.QUEUED.value], stat.queued if stat else 0)
        jobs.add_metric([queue, JobState.RUNNING.value], running.get(queue, 0))
        if stat is not None:
            workers.add_metric([queue], stat.workers)
            busy.add_metric([queue], stat.busy)
    yield from (jobs, workers, busy)


def _per_rate(service: QueueService) -> Iterator[Metric]:
    """Each rate-limited class's window now: starts in it, queued jobs held back by it."""
    started = GaugeMetricFamily(
        "bgjobs_rate_limit_started",
        "Starts of each rate-limited class within its window now (every limit_by value's).",
        labels=["job_class"],
    )
    held = GaugeMetricFamily(
        "bgjobs_rate_limit_held",
        "Queued jobs of each rate-limited class waiting for its window to free a start.",
        labels=["job_class"],
    )
    for rate in service.rate_stats():
        started.add_metric([rate.class_name], rate.started)
        held.add_metric([rate.class_name], rate.held)
    yield from (started, held)


class Metrics:
    def __init__(self, service: QueueService) -> None:
        self.registry = CollectorRegistry()
        self._attempts = Counter(
            "bgjobs_attempts",
            "Attempts finished, by job class and outcome.",
            ["job_class", "outcome"],
            registry=self.registry,
        )
        self._failures = Counter(
            "bgjobs_attempt_failures",
            "Attempts that failed, timed out or crashed, by job class.",
            ["job_class"],
            registry=self.registry,
        )
        self._durations = Histogram(
            "bgjobs_attempt_duration_seconds",
            "How long attempts ran, by job class.",
            ["job_class"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveState(service))
        # Series of every allow-listed class exist from the start, at zero, so that rates
        # and alerts work before a class first fails.
        for class_name in service.config.settings.allowed_jobs:
            self._failures.labels(class_name)
            self._durations.labels(class_name)
            for outcome in Outcome:
                self._attempts.labels(class_name, outcome.value)

    def on_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """An attempt listener (`QueueService.watch_attempts`)."""
        self._attempts.labels(job.class_name, result.outcome.value).inc()
        if result.outcome in FAILED_OUTCOMES:
            self._failures.labels(job.class_name).inc()
        self._durations.labels(job.class_name).observe(max(result.duration, 0.0))
