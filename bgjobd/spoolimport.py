"""The daemon's side of the spool (see `bgjobd.spool`): jobs clients spooled while it was
away become its own, through its normal submit path, with their idempotency keys.

At start (off the start path: a task that begins once the daemon listens) and every
second after (a scandir of a directory that is usually empty), spooled files are
imported in batches, each batch committed before the next, so requests are answered in
between however many thousands wait. A file is removed once its job is committed.

A key already stored is the same job:
- the daemon's own (the client gave up on a submit the daemon had received): the file goes;
- a fallback drainer's: taken over once no live drainer runs one of its links (the check
  and the change are one write, so a drainer's claim cannot come between): its waiting
  links become the daemon's and are scheduled, an attempt left by a dead drainer is
  recorded (`bgjobd.handover`), and the file goes. While a live drainer is in an attempt
  the file stays, and the next pass looks again; the drainer exits after that attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bgjobd import handover, spool
from bgjobd.engine import Engine
from bgjobd.joblog import describe_params
from bgjobs.errors import BadParams, RefusedError, TooLarge

INTERVAL: Final = 1.0
BATCH: Final = 200


class SpoolImport:
    def __init__(self, engine: Engine, on_error: Callable[[str], None]) -> None:
        self.engine = engine
        self.on_error = on_error
        self.spool = spool.directory_of(engine.config.storage_dir)
        self._submitted: set[Path] = set()
        """Files whose import waits for its commit."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> SpoolImport:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.import_pending()
            except Exception as exc:  # noqa: BLE001  # reported; the next pass tries again
                self.on_error(f"importing spooled jobs failed: {exc!r}")
            await asyncio.sleep(INTERVAL)

    async def import_pending(self) -> None:
        paths = spool.pending(self.spool)
        for start in range(0, len(paths), BATCH):
            if self.engine.shutting_down:
                return
            for path in paths[start : start + BATCH]:
                self._import(path)
            with contextlib.suppress(Exception):  # a failed commit is reported per file
                await self.engine.journal.committed()

    def _import(self, path: Path) -> None:
        if path in self._submitted:
            return
        try:
            item = spool.read(path)
        except spool.Unreadable as exc:
            self.on_error(f"set aside an unreadable spool file: {exc}")
            spool.reject(path)
            return
        if item is None:
            return
        spec = item.spec
        try:
            self.engine.submit([spec], lambda stored: self._stored(path, stored))
        except (RefusedError, TooLarge, BadParams) as exc:
            # Refused since the client checked (the configuration changed): kept aside.
            # Anything else (a full store...) leaves the file for the next pass.
            if not isinstance(exc, RefusedError):  # the engine logs refusals itself
                self.engine.log.error(
                    f"{spec.class_name}::{spec.method}",
                    f"spooled job not imported: {exc} (params: {describe_params(spec.params)})",
                )
            spool.reject(path)
            return
        self._submitted.add(path)

    def _stored(self, path: Path, stored: list[tuple[list[int], bool]] | BaseException) -> None:
        self._submitted.discard(path)
        if isinstance(stored, BaseException):
            return  # the journal said why; the file stays for the next pass
        ids, existed = stored[0]
        if not existed:
            spool.remove(path)
            return
        self._take_over(path, ids)

    def _take_over(self, path: Path, ids: list[int]) -> None:
        engine = self.engine
        store = engine.store
        links = [job for job in map(store.get, ids) if job is not None]
        live = [job for job in links if not job.state.is_final]
        if not any(handover.is_drainer(job.owner) for job in live):
            # The daemon's already, or ended in a drainer's hands: tell whoever waits.
            spool.remove(path)
            engine.adopted([], ids)
            return
        if handover.blocked(engine.config, live):
            return
        settled = handover.settle_abandoned(engine.config, store, engine.log, live)
        adopted = store.adopt(ids, engine.owner)
        if adopted is None:
            return  # a drainer claimed a link meanwhile: next pass

        def taken(failure: BaseException | None) -> None:
            if failure is not None:
                return
            spool.remove(path)
            if settled:
                handover.forget_outcome_files(engine.config, live)
            engine.adopted(adopted, ids)
            engine.log.info(
                live[0].label, f"job {ids[0]} taken over from the fallback drainer's spool"
            )

        engine.journal.when_committed(taken)


def start(engine: Engine, on_error: Callable[[str], None]) -> SpoolImport:
    return SpoolImport(engine, on_error).start()
