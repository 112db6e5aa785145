"""The queue as it will run: queued jobs in dispatch order (the store knows which jobs are
queued, the scheduler in which order they go), with those a concurrency limit holds back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bgjobd.dashboard.present import job_summary
from bgjobd.engine import Engine
from bgjobd.store.base import JobQuery
from bgjobs.model import JobState


@dataclass(frozen=True)
class Queue:
    ids: list[int]
    """Queued jobs in the order they will start."""
    held: frozenset[int]
    """Those parked by their class's concurrency limit: they start when a slot frees."""


def dispatch_order(engine: Engine, class_name: str = "", search: str = "") -> Queue:
    """The store says which jobs are queued; the scheduler says in which order they go."""
    queued = {entry.job_id: entry for entry in engine.store.queued()}
    if class_name or search:
        found, _ = engine.store.search(
            JobQuery(
                states=[JobState.QUEUED],
                class_name=class_name or None,
                search=search or None,
                limit=max(len(queued), 1),
            )
        )
        wanted = {job.id for job in found} & queued.keys()
    else:
        wanted = set(queued)
    ready = list(
        dict.fromkeys(e.job_id for e in engine.scheduler.ready_entries() if e.job_id in wanted)
    )
    held = sorted(
        (queued[job_id] for job_id in wanted.difference(ready)),
        key=lambda entry: (entry.rank, entry.run_at, entry.job_id),
    )
    return Queue(ids=ready + [entry.job_id for entry in held], held=frozenset(wanted - set(ready)))


def queue_head(engine: Engine, limit: int, now: float) -> list[dict[str, Any]]:
    """The first jobs of the queue without reading all of it from the store (the overview
    is redrawn on every burst of events, and a backlog may be long): the scheduler's ready
    jobs in order, each checked against the store. Only when they do not fill the section
    (a short queue, or jobs held by a concurrency limit) is the whole queue ordered."""
    rows: list[dict[str, Any]] = []
    # Cancelled jobs linger in the ready heap until popped: look a little further.
    head = engine.scheduler.first_ready(limit * 2 + 16)
    for job_id in dict.fromkeys(entry.job_id for entry in head):
        if len(rows) == limit:
            return rows
        job = engine.store.get(job_id)
        if job is not None and job.state is JobState.QUEUED:
            rows.append({**job_summary(job, now), "position": len(rows) + 1, "held": False})
    return queued_rows(engine, dispatch_order(engine), 0, limit, now)


def queued_rows(
    engine: Engine, queue: Queue, offset: int, limit: int, now: float
) -> list[dict[str, Any]]:
    rows = []
    for position, job_id in enumerate(queue.ids[offset : offset + limit], start=offset + 1):
        job = engine.store.get(job_id)
        if job is None:
            continue
        row = job_summary(job, now)
        row["position"] = position
        row["held"] = job_id in queue.held
        rows.append(row)
    return rows
