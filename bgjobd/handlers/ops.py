"""`ListSchedules` and `Prune`: what the schedules will do, and retention now."""

from __future__ import annotations

from bgjobd.handlers.context import Context
from bgjobs.protocol import ListSchedules, Prune, Pruned, ScheduleInfo, ScheduleList


async def schedules(ctx: Context, request: ListSchedules) -> ScheduleList:
    return ScheduleList(
        rid=request.rid,
        schedules=[
            ScheduleInfo(
                name=state.schedule.name,
                cron=state.schedule.settings.cron,
                timezone=state.schedule.settings.timezone,
                class_name=state.schedule.settings.class_name,
                method=state.schedule.settings.method,
                missed=state.schedule.settings.missed,
                next_run=state.next_run,
                last_run=state.last_run,
            )
            for state in ctx.service.schedules()
        ],
    )


async def prune(ctx: Context, request: Prune) -> Pruned:
    report = await ctx.service.prune(dry_run=request.dry_run)
    return Pruned(
        rid=request.rid,
        dry_run=report.dry_run,
        jobs=dict(report.by_state),
        attempts=report.attempts,
        files=report.files,
    )
