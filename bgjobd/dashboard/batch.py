"""How a batch looks on a job's page (and in `/api/jobs/<id>`): its callback, how many of
its jobs are in each state, and every job, whether the page shows the callback or a job of
the batch."""

from __future__ import annotations

from typing import Any, Final

from bgjobd.dashboard.present import job_summary
from bgjobs.model import JobInfo, JobState

WATCHED_MEMBERS: Final = 98
"""Jobs of a batch whose events refresh the page: the event stream takes up to 100 ids,
one of them the page's own job and one the callback. The callback's release (after the
last job) refreshes it in any case."""
_ORDER: Final = tuple(JobState)


def batch_view(job: JobInfo, members: list[JobInfo], now: float) -> dict[str, Any] | None:
    """The batch of `job`, or None outside a batch."""
    if job.batch_id is None:
        return None
    counts = {state.value: 0 for state in _ORDER}
    for member in members:
        counts[member.state.value] += 1
    parts = [f"{count} {state}" for state, count in counts.items() if count]
    ended = sum(counts[state.value] for state in _ORDER if state.is_final)
    return {
        "id": job.batch_id,
        "callback_id": job.batch_id,
        "is_callback": job.is_batch_callback,
        "run_callback_on_failure": job.run_callback_on_failure if job.is_batch_callback else None,
        "size": len(members),
        "ended": ended,
        "counts": counts,
        "counts_text": f"{len(members)} jobs: " + ", ".join(parts),
        "members": [job_summary(member, now) for member in members],
        "watch": [job.batch_id, *(member.id for member in members[:WATCHED_MEMBERS])],
    }
