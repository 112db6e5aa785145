"""What the pages and the API show, read through the queue's service: a filtered listing,
the overview's sections, a job's details, the daemon's figures."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from bgjobd.dashboard import chart
from bgjobd.dashboard.filters import FINISHED, Filters
from bgjobd.dashboard.formatting import fmt_age
from bgjobd.dashboard.logtail import tail_output
from bgjobd.dashboard.present import job_detail, job_summary, node_row
from bgjobd.dashboard.queue import dispatch_order, queue_head, queued_rows
from bgjobd.dashboard.recent import RecentFinishes
from bgjobd.service import QueueService
from bgjobd.store.base import JobQuery
from bgjobs.model import JobInfo, JobState, RateStats
from bgjobs.ratetext import next_text, rate_text, started_text

SECTION_LIMIT: Final = 10
"""Jobs shown per section of the overview; the section links to its full listing."""


def listing(service: QueueService, filters: Filters, now: float | None = None) -> dict[str, Any]:
    """A page of the jobs matching the filters: the queue in dispatch order, the rest newest
    first."""
    now = time.time() if now is None else now
    offset = (filters.page - 1) * filters.per_page
    if filters.states == (JobState.QUEUED,):
        queue = dispatch_order(service, filters.class_name, filters.search, filters.queue)
        rows = queued_rows(service, queue, offset, filters.per_page, now)
        total, order = len(queue.ids), "dispatch"
    else:
        jobs, total = service.search(
            JobQuery(
                states=filters.states,
                class_name=filters.class_name or None,
                search=filters.search or None,
                queue=filters.queue or None,
                limit=filters.per_page,
                offset=offset,
            )
        )
        rows, order = [job_summary(job, now) for job in jobs], "newest"
    return {
        "jobs": rows,
        "total": total,
        "page": filters.page,
        "per_page": filters.per_page,
        "pages": max(1, math.ceil(total / filters.per_page)),
        "order": order,
        "filters": filters.as_json(),
    }


def overview(
    service: QueueService, recent: RecentFinishes, now: float | None = None
) -> dict[str, Any]:
    """The sections of the main page, each its first jobs and how many there are."""
    now = time.time() if now is None else now
    counts = service.counts()
    running, _ = service.search(
        JobQuery(states=[JobState.RUNNING], limit=SECTION_LIMIT, oldest_first=True)
    )
    scheduled = [service.find(entry.job_id) for entry in service.scheduled(SECTION_LIMIT)]
    failed, _ = service.search(JobQuery(states=[JobState.FAILED], limit=SECTION_LIMIT))

    def section(state: str, rows: list[dict[str, Any]], total: int) -> dict[str, Any]:
        return {"total": total, "jobs": rows, "more": f"/dashboard/jobs?state={state}"}

    def rows(jobs: list[JobInfo]) -> list[dict[str, Any]]:
        return [job_summary(job, now) for job in jobs]

    return {
        "running": section("running", rows(running), counts[JobState.RUNNING]),
        "scheduled": section(
            "scheduled",
            rows([job for job in scheduled if job is not None]),
            counts[JobState.SCHEDULED],
        ),
        "queued": section(
            "queued", queue_head(service, SECTION_LIMIT, now), counts[JobState.QUEUED]
        ),
        "recent": section(
            "finished",
            rows(recent.latest(service, SECTION_LIMIT)),
            sum(counts[state] for state in FINISHED),
        ),
        "failed": section("failed", rows(failed), counts[JobState.FAILED]),
    }


def stats(service: QueueService, now: float | None = None) -> dict[str, Any]:
    """The daemon's figures and the throughput of the last hour."""
    now = time.time() if now is None else now
    figures = service.stats()
    data: dict[str, Any] = msgspec.to_builtins(figures)
    series = throughput(service, now)
    data.update(
        total=sum(data["counts"].values()),
        busy=service.busy,
        worker_count=service.worker_count,
        queues_text=queues_text(data["queues"]),
        uptime_text=fmt_age(data["uptime"]),
        throughput=series,
        chart=chart.bars(series),
        nodes=node_rows(service),
        rates=rate_rows(figures.rates, now),
    )
    return data


def node_rows(service: QueueService) -> list[dict[str, Any]]:
    """The nodes, their leases judged on the clock they are read on (the server's)."""
    nodes, now = service.nodes(), service.clock()
    return [node_row(node, service.node_name, now) for node in nodes]


def rate_rows(rates: list[RateStats], now: float) -> list[dict[str, Any]]:
    """Each rate-limited class with its figures in words (the page's cells, by name)."""
    moment = datetime.fromtimestamp(now, UTC)
    return [
        {
            **msgspec.to_builtins(rate),
            "rate_text": rate_text(rate),
            "started_text": started_text(rate),
            "next_text": next_text(rate, moment),
        }
        for rate in rates
    ]


def queues_text(queues: list[dict[str, Any]]) -> str:
    """Each queue's workers busy of all on this node, and its jobs waiting on any node
    (`fast 1/2, 3 queued · slow 2/2, 40 queued`); empty with the default queue alone."""
    if len(queues) < 2:
        return ""
    return " · ".join(
        f"{q['name']} {q['busy']}/{q['workers']}"
        + (f", {q['queued']} queued" if q["queued"] else "")
        for q in queues
    )


def throughput(
    service: QueueService, now: float, minutes: int = chart.MINUTES
) -> list[dict[str, Any]]:
    """Jobs finished per minute by final state, oldest minute first, the current one last."""
    first = int(now // 60) - minutes + 1
    table = {minute: dict.fromkeys(FINISHED, 0) for minute in range(first, first + minutes)}
    for minute, state, count in service.finished_per_minute(first * 60.0):
        if minute in table and state in table[minute]:
            table[minute][state] += count
    return [
        {"minute": minute * 60, **{state.value: n for state, n in per_state.items()}}
        for minute, per_state in table.items()
    ]


async def detail(
    service: QueueService, job_id: int, now: float | None = None
) -> dict[str, Any] | None:
    """Everything about one job, or None when there is no such job."""
    job = service.find(job_id)
    if job is None:
        return None
    chain = service.chain(job.chain_id) if job.chain_id is not None else []
    batch = service.batch_members(job.batch_id) if job.batch_id is not None else []
    output = await tail_output(service.output_path(job.id))
    return job_detail(job, chain, output, now, batch)
