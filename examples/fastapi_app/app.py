"""A FastAPI app that hands work to bgjobs with the asyncio client.

    BGJOBS_CONFIG=/path/to/bgjobs.toml uvicorn examples.fastapi_app.app:app

Requests share one pipelined connection per event loop; the app's lifespan closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

from bgjobctl import JobFailed, run_background_job_async
from bgjobctl.aclient import close_clients


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await close_clients()


app = FastAPI(lifespan=lifespan)


@app.post("/lessons/{title}")
async def create_lesson(title: str, wait: float = 0) -> dict[str, Any]:
    """Queue the lesson's job and answer at once; with `?wait=SECONDS`, answer with its
    result instead."""
    handle = await run_background_job_async("LessonCreatedService", "handle", [title])
    if not wait:
        return {"job_id": handle.id}
    try:
        result = await handle.wait(wait)
    except JobFailed as exc:
        raise HTTPException(status_code=502, detail=str(exc)) from None
    return {"job_id": handle.id, "result": result}
