"""A pool of worker processes: warm ones that are reused, or a fresh one per attempt.

A worker that was killed (timeout, cancel) or died is replaced in the background, so the
pool keeps its size; with `max_jobs_per_worker` a warm worker retires after that many
attempts. Each worker gets a cgroup of its own where the host allows it, and orphans a
dead worker leaves behind are killed (see `bgjobd.cgroups` and `bgjobd.orphans`).

Warm workers are forked from a template process that has imported the jobs package
(`[daemon] worker_start = "fork"`, see `bgjobd.template`), one per configuration: a reload
starts another, and one that dies is replaced. Where the template cannot start or fork,
workers start as new interpreters, as with `worker_start = "spawn"` and fresh isolation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Literal

from bgjobd import donefiles
from bgjobd.cgroups import CgroupTree
from bgjobd.orphans import Orphans
from bgjobd.template import Template, TemplateGone, can_fork
from bgjobd.worker.messages import Setup
from bgjobd.workers import STARTUP_TIMEOUT, WorkerProcess
from bgjobs.config import Config

RESPAWN_BACKOFF = (0.1, 0.5, 1.0, 5.0)
TEMPLATE_RETRY = 60.0
"""After a template failed to start, workers start as new interpreters this many seconds
before another template is tried (a reload tries at once)."""


def _at_once(callback: Callable[[], None]) -> None:
    callback()


class WorkerPool:
    def __init__(
        self,
        config: Config,
        *,
        size: int,
        on_error: Callable[[str], None],
        after_commit: Callable[[Callable[[], None]], None] | None = None,
        worker_start: Literal["fork", "spawn"] | None = None,
    ) -> None:
        self._config = config
        self._worker_start = worker_start
        """Overrides `[daemon] worker_start` (a one-shot run has no use for a template)."""
        self._after_commit = after_commit or _at_once
        """Runs a callback once every write made so far is committed (the daemon's journal);
        by default at once, for an owner that commits each attempt before the next."""
        self.size = size
        self._on_error = on_error
        self._fresh = config.settings.daemon.isolation == "fresh"
        self._forking = False
        """Warm workers are forked from a template (decided at `start`, again at a reload)."""
        self._template: Template | None = None
        self._templates: set[Template] = set()
        """Every template process not yet reaped: the current one and those retiring."""
        self._template_lock = asyncio.Lock()
        self._template_failed_at: float | None = None
        self._max_jobs = config.settings.daemon.max_jobs_per_worker
        self._idle: asyncio.Queue[WorkerProcess] = asyncio.Queue()
        self._all: set[WorkerProcess] = set()
        self._background: set[asyncio.Task[object]] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._closing = False
        self._cgroups: CgroupTree | None = None
        self._orphans = Orphans(self._worker_pids)

    @property
    def workers(self) -> list[WorkerProcess]:
        return sorted(self._all, key=lambda worker: worker.started_at)

    async def start(self) -> None:
        """Set up containment, then start the warm workers (all at once; each imports the
        jobs package)."""
        self._orphans.start()
        if self._cgroups is None:
            self._cgroups = CgroupTree.create()
        self._forking = self._can_fork(self._config)
        if not self._fresh:
            await asyncio.gather(*(self._replenish() for _ in range(self.size)))

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration: idle workers are replaced, busy ones retire when
        their attempt ends."""
        self._config = config
        self._max_jobs = config.settings.daemon.max_jobs_per_worker
        self._generation += 1
        # The jobs package may have changed: the next worker comes from a new template.
        self._forking = self._can_fork(config)
        self._template_failed_at = None
        if self._template is not None:
            self._retire_template(self._template)
        while not self._idle.empty():
            worker = self._idle.get_nowait()
            self._retire(worker)
            self._replace(worker)

    async def acquire(self) -> WorkerProcess:
        """A worker ready for one attempt. Callers keep at most `size` acquired at once."""
        if self._fresh:
            return await self._spawn()
        while True:
            worker = await self._idle.get()
            if worker.alive:
                return worker
            self._discard_dead(worker)

    def take_idle(self) -> WorkerProcess | None:
        """An idle warm worker at once, or None (all busy, starting, or fresh isolation)."""
        while not self._fresh and not self._idle.empty():
            worker = self._idle.get_nowait()
            if worker.alive:
                return worker
            self._discard_dead(worker)
        return None

    def _discard_dead(self, worker: WorkerProcess) -> None:
        """An idle worker that died (killed from outside) never gets a job: it goes, and
        another takes its place."""
        self._retire(worker)
        self._replace(worker)

    def _died_idle(self, worker: WorkerProcess) -> None:
        if not self._closing and not worker.replaced:
            self._on_error(f"worker {worker.pid} died while idle; starting another")
        self._replace(worker)

    def _replace(self, worker: WorkerProcess) -> None:
        if not worker.replaced and not self._fresh and not self._closing:
            worker.replaced = True
            self._spawn_in_background()

    def release(self, worker: WorkerProcess, *, reusable: bool) -> None:
        keep = reusable and self._keeps(worker)
        if keep:
            if worker.untidied():
                self._tidy(worker)
            self._idle.put_nowait(worker)
            return
        self._retire(worker)
        self._replace(worker)

    def reusable_at_once(self, worker: WorkerProcess) -> bool:
        """Whether a worker whose attempt just ended may take another job at once, with no
        trip through the pool: `release` would keep it, and it needs no tidying."""
        return self._keeps(worker) and not worker.untidied()

    def _keeps(self, worker: WorkerProcess) -> bool:
        return (
            worker.alive
            and not self._fresh
            and not self._closing
            and worker.generation == self._generation
            and not (self._max_jobs and worker.attempts_run >= self._max_jobs)
        )

    async def stop_worker(self, worker: WorkerProcess) -> None:
        await worker.kill(self._config.settings.daemon.kill_grace)

    async def close(self) -> None:
        """Stop every worker; busy ones are killed (their attempts count as interrupted)."""
        self._closing = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        grace = self._config.settings.daemon.kill_grace
        await asyncio.gather(
            *(
                worker.close() if worker.busy_with is None else worker.kill(grace)
                for worker in list(self._all)
            ),
            return_exceptions=True,
        )
        self._all.clear()
        await asyncio.gather(
            *(template.close() for template in list(self._templates)), return_exceptions=True
        )
        self._templates.clear()
        self._orphans.sweep()
        self._orphans.close()
        if self._cgroups is not None:
            self._cgroups.remove()

    @property
    def containment(self) -> str:
        """What contains the workers here, in words (for the start-up line)."""
        if self._cgroups is not None:
            memory = " with memory.max" if self._cgroups.memory else ""
            return f"a cgroup per worker under {self._cgroups.path}{memory}"
        if self._orphans.enabled:
            return "their process group and the subreaper (no writable cgroup v2 here)"
        return "their process group alone"

    @property
    def worker_start(self) -> str:
        """How warm workers start here: `fork` (from a template) or `spawn`."""
        return "fork" if self._forking and not self._fresh else "spawn"

    # internals -------------------------------------------------------------------------

    def _setup(self) -> Setup:
        settings = self._config.settings
        return Setup(
            jobs_package=settings.jobs_package,
            base_dir=str(self._config.base_dir),
            allowed_jobs=settings.allowed_jobs,
            tracing=settings.tracing.enabled,
            tracing_setup=settings.tracing.setup,
        )

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BGJOBS_STORAGE"] = str(self._config.storage_dir)
        if self._config.path is not None:
            env["BGJOBS_CONFIG"] = str(self._config.path)
        return env

    def _worker_pids(self) -> set[int] | None:
        """The daemon's children that are not orphans: workers and templates."""
        pids = {worker.pid for worker in self._all}
        pids.update(template.pid for template in self._templates)
        return None if 0 in pids else pids

    def _worker_exited(self, worker: WorkerProcess) -> None:
        self._orphans.sweep()
        if worker.pid:
            files = donefiles.files_of(str(self._config.locks_dir), worker.pid)
            if files:
                self._after_commit(partial(donefiles.remove, files))

    def _tidy(self, worker: WorkerProcess) -> None:
        """Between two attempts: the outcome files the worker has moved past go once what
        they say is committed."""
        worker.tidied()
        files = donefiles.superseded(str(self._config.locks_dir), worker.pid)
        if files:
            self._after_commit(partial(donefiles.remove, files))

    async def _spawn(self) -> WorkerProcess:
        template = await self._current_template() if self._forking and not self._fresh else None
        if template is None:
            return await self._start_worker(None)
        try:
            return await self._start_worker(template)
        except TemplateGone as exc:
            if self._closing:
                raise
            self._on_error(f"the template process could not fork a worker ({exc}); starting one")
            return await self._start_worker(None)

    async def _start_worker(self, template: Template | None) -> WorkerProcess:
        worker = WorkerProcess(
            self._setup(),
            self._environment(),
            str(self._config.base_dir),
            cgroups=self._cgroups,
            on_exit=self._worker_exited,
            template=template,
        )
        worker.generation = self._generation
        worker.on_idle_death = self._died_idle
        self._all.add(worker)
        try:
            await worker.start()
        except BaseException:
            worker.replaced = True  # the caller starts another, or gives up
            await worker.kill(0)
            self._all.discard(worker)
            raise
        finally:
            self._orphans.sweep_if_pending()
        if worker.import_error:
            self._on_error(
                f"worker {worker.pid} cannot import the jobs package: {worker.import_error}"
            )
        return worker

    async def _replenish(self) -> None:
        for pause in (*RESPAWN_BACKOFF, None):
            if self._closing:
                return
            try:
                self._idle.put_nowait(await self._spawn())
                return
            except Exception as exc:
                self._on_error(f"cannot start a worker: {exc}")
                if pause is None:
                    raise
                await asyncio.sleep(pause)

    def _spawn_in_background(self) -> None:
        self._in_background(self._replenish())

    def _in_background(self, work: Coroutine[None, None, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # the template ------------------------------------------------------------------------

    def _can_fork(self, config: Config) -> bool:
        return (
            (self._worker_start or config.settings.daemon.worker_start) == "fork"
            and self._orphans.enabled  # the forked workers become the daemon's children
            and can_fork()
        )

    async def _current_template(self) -> Template | None:
        """The template of the current configuration, started if need be; None while
        workers start as new interpreters instead (one failed to start not long ago)."""
        async with self._template_lock:
            template = self._template
            if template is not None and template.alive:
                if template.generation == self._generation:
                    return template
                self._retire_template(template)
            failed = self._template_failed_at
            if self._closing or (failed is not None and time.monotonic() - failed < TEMPLATE_RETRY):
                return None
            template = Template(
                self._setup(),
                self._environment(),
                str(self._config.base_dir),
                generation=self._generation,
            )
            self._templates.add(template)
            try:
                ready = await template.start(STARTUP_TIMEOUT)
            except Exception as exc:  # noqa: BLE001  # whatever it is, workers still start
                self._template_failed_at = time.monotonic()
                self._on_error(
                    f"cannot start the template process ({exc or type(exc).__name__}); "
                    f"workers start as new interpreters for {TEMPLATE_RETRY:.0f}s"
                )
                await template.close(wait=0)
                self._templates.discard(template)
                return None
            finally:
                self._orphans.sweep_if_pending()
            if ready.threads > 1:
                self._on_error(
                    f"the jobs package started {ready.threads - 1} thread(s) as it was "
                    "imported; workers forked from the template do not have them "
                    '(worker_start = "spawn" if they need them)'
                )
            self._template = template
            self._in_background(self._watch_template(template))
            return template

    async def _watch_template(self, template: Template) -> None:
        code = await template.exited()
        self._templates.discard(template)
        if template is not self._template or self._closing:
            return  # retired
        self._template = None
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        self._on_error(f"the template process {template.pid} {how}; starting another")
        await self._current_template()

    def _retire_template(self, template: Template) -> None:
        """Its workers live on; it forks no more."""
        if template is self._template:
            self._template = None

        async def close() -> None:
            try:
                await template.close()
            finally:
                self._templates.discard(template)

        task = asyncio.create_task(close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _retire(self, worker: WorkerProcess) -> None:
        async def stop() -> None:
            try:
                await (worker.close() if worker.alive else worker.kill(0))
            finally:
                self._all.discard(worker)

        task = asyncio.create_task(stop())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
