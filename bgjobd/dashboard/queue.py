"""The queue as it will run: queued jobs in the order claims take them, with those a
concurrency limit holds back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bgjobd.dashboard.present import job_summary
from bgjobd.service import QueueService
from bgjobd.store.base import JobQuery
from bgjobs.model import JobState


@dataclass(frozen=True)
class Queue:
    ids: list[int]
    """Queued jobs in the order they will start."""
    held: frozenset[int]
    """Those parked by their class's concurrency limit: they start when a slot frees."""


def dispatch_order(
    service: QueueService, class_name: str = "", search: str = "", queue: str = ""
) -> Queue:
    """The store's queued jobs in the order claims take them (each queue's in that order,
    the queues side by side); those of a class at its concurrency limit (counted over
    every node) are held."""
    queued = service.queued()
    if class_name or search or queue:
        found, _ = service.search(
            JobQuery(
                states=[JobState.QUEUED],
                class_name=class_name or None,
                search=search or None,
                queue=queue or None,
                limit=max(len(queued), 1),
            )
        )
        wanted = {job.id for job in found}
        queued = [entry for entry in queued if entry.job_id in wanted]
    full = _classes_at_limit(service)
    ready = [entry.job_id for entry in queued if entry.class_name not in full]
    held = [entry.job_id for entry in queued if entry.class_name in full]
    return Queue(ids=ready + held, held=frozenset(held))


def _classes_at_limit(service: QueueService) -> set[str]:
    limits = service.limits
    if not limits:
        return set()
    running = Counter(job.class_name for job in service.running())
    return {name for name, limit in limits.items() if running[name] >= limit}


def queue_head(service: QueueService, limit: int, now: float) -> list[dict[str, Any]]:
    """The first jobs of the queue without reading all of it from the store (the overview
    is redrawn on every burst of events, and a backlog may be long). Only when a class is
    held by its limit is the whole queue ordered."""
    if _classes_at_limit(service):
        return queued_rows(service, dispatch_order(service), 0, limit, now)
    rows: list[dict[str, Any]] = []
    for entry in service.queued_in_order(limit):
        job = service.find(entry.job_id)
        if job is not None:
            rows.append({**job_summary(job, now), "position": len(rows) + 1, "held": False})
    return rows


def queued_rows(
    service: QueueService, queue: Queue, offset: int, limit: int, now: float
) -> list[dict[str, Any]]:
    rows = []
    for position, job_id in enumerate(queue.ids[offset : offset + limit], start=offset + 1):
        job = service.find(job_id)
        if job is None:
            continue
        row = job_summary(job, now)
        row["position"] = position
        row["held"] = job_id in queue.held
        rows.append(row)
    return rows
