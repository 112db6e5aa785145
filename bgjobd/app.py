"""The daemon, wired in one place: store, journal, workers, engine, socket, dashboard,
signals. `Daemon.run()` serves until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bgjobd import filemodes, locks, sdnotify, spoolimport
from bgjobd.attempts import Attempts
from bgjobd.engine import Engine
from bgjobd.events import EventHub
from bgjobd.handlers.context import Context
from bgjobd.joblog import NO_JOB, JobLog
from bgjobd.journal import Journal
from bgjobd.leases import Leases
from bgjobd.listen import (
    BACKLOG,
    InstanceLock,
    bind_tcp,
    bind_unix,
    ensure_token,
    socket_directory,
)
from bgjobd.ops import Ops
from bgjobd.pool import WorkerPool
from bgjobd.recovery import recover
from bgjobd.server import ConnectionLimits, Connections, Gate
from bgjobd.service import QueueService
from bgjobd.store.sqlite import SQLiteStore
from bgjobd.storehealth import StoreHealth, mark_lost, open_store, refuse_if_lost
from bgjobs.config import Config, load_config
from bgjobs.errors import ConfigError, ExitCode
from bgjobs.protocol import Reply

if TYPE_CHECKING:
    from bgjobd.store.postgres import PostgresStore

    DaemonStore = SQLiteStore | PostgresStore


class Service(Protocol):
    """Something the daemon starts after the socket and stops before the workers."""

    async def stop(self) -> None: ...


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        # Before any file is made: nothing bgjobd writes is for other users' eyes.
        self.modes = filemodes.modes_of(config)
        filemodes.restrict_umask(self.modes)
        tightened: list[str] = []
        filemodes.prepare_storage(config, self.modes, tightened.append)
        self.log = JobLog(config.logs_dir, config.settings.logging.format)
        for message in tightened:
            self.say(message)
        self._stopping = asyncio.Event()
        self._locks: list[InstanceLock] = []
        self._server: asyncio.AbstractServer | None = None
        self._bound_socket = False
        self._services: list[Service] = []
        self._connections: Connections | None = None
        self.engine: Engine | None = None
        self.service: QueueService | None = None
        """The queue as handlers and the dashboard see it."""
        self.leases: Leases | None = None
        self._health: StoreHealth | None = None
        self.ops: Ops | None = None
        self.store_lost: str | None = None
        """Why the store was lost while running: the daemon stops at once, exit non-zero."""

    def say(self, message: str, *, error: bool = False) -> None:
        """The daemon's own news: to stderr, and to the log files."""
        print(f"bgjobd: {message}", file=sys.stderr, flush=True)
        (self.log.error if error else self.log.info)(NO_JOB, message)

    async def run(self) -> int:
        config = self.config
        refuse_if_lost(config)
        self._locks.append(
            InstanceLock(config.storage_dir / "bgjobd.lock", str(config.storage_dir))
        )
        if config.settings.daemon.transport == "unix":
            socket_directory(
                config.socket_path.parent,
                open_to_others=self._unix_gate().admits_others,
                warn=lambda message: self.say(message, error=True),
            )
            self._locks.append(
                InstanceLock(
                    config.socket_path.with_name(config.socket_path.name + ".lock"),
                    str(config.socket_path),
                )
            )
        # Jobs whose worker left a lock file had begun an attempt (see recovery).
        began = locks.job_ids(config.locks_dir)
        for stale in locks.remove_stale(config.locks_dir):
            self.log.warning(NO_JOB, f"removed stale lock file {stale.name}")
        store = open_store(config, lambda message: self.say(message, error=True))
        health = StoreHealth(
            config,
            say=lambda message: self.say(message, error=True),
            on_lost=self.lose_store,
            connection=None if isinstance(store, SQLiteStore) else store,
        )
        health.remember()
        self._health = health
        journal = Journal(
            store,
            lambda message: self.say(message, error=True),
            health=health,
            on_fatal=self.lose_store,
        )
        pool = WorkerPool(
            config,
            size=config.workers,
            on_error=lambda message: self.say(message, error=True),
            after_commit=journal.after_commit,
        )
        owner = config.node_name
        attempts = Attempts(config, pool, self.log, owner)
        engine, service = self._core(store, journal, attempts)
        leases = self._join(engine, health, store)
        try:
            recovered = recover(engine, began)
            engine.start()
            if recovered:
                self.say(f"recovered {recovered} job(s) that were running when bgjobd stopped")
            await pool.start()
            leases.start()
            attempts.start_watching_locks()
            health.start()
            await self._listen(service)
            # Jobs spooled by clients while no daemon answered: imported from a task, in
            # batches, so the daemon answers at once however many there are.
            self._services.append(spoolimport.start(engine, lambda m: self.say(m, error=True)))
            await self._start_services()
            self._install_signals()
            sdnotify.notify("READY=1")
            watchdog = self._start_watchdog()
            self.say(
                f"started as node {owner} (pid {os.getpid()}, {pool.size} "
                f"{config.settings.daemon.isolation} worker(s){_per_queue(config)}, "
                f"listening on {self._address()})"
            )
            self.say(f"attempts contained by {pool.containment}")
            await self._stopping.wait()
            if watchdog is not None:
                watchdog.cancel()
            sdnotify.notify("STOPPING=1")
            if self.store_lost is None:
                self.say("stopping: no new jobs; waiting for running attempts")
        finally:
            health.stop()
            committed = await self._shutdown(engine, pool, attempts, store)
        if self.store_lost is not None:
            self.say(f"stopped because the store was lost: {self.store_lost}", error=True)
            return ExitCode.FAILED
        if not committed:
            self.say("stopped, but the last writes could not be committed", error=True)
            return ExitCode.FAILED
        self.say("stopped")
        return ExitCode.OK

    def _core(
        self, store: DaemonStore, journal: Journal, attempts: Attempts
    ) -> tuple[Engine, QueueService]:
        """The engine, and the service through which requests and the dashboard reach it."""
        self.engine = Engine(
            config=self.config,
            store=store,
            journal=journal,
            attempts=attempts,
            events=EventHub(),
            joblog=self.log,
            owner=self.config.node_name,
        )
        self.service = QueueService(self.engine, self.started_at)
        return self.engine, self.service

    def _join(self, engine: Engine, health: StoreHealth, store: DaemonStore) -> Leases:
        """Take this node's name in the store, before any claim and before recovering its
        own jobs; a name a live node holds stops the start, releasing what it holds."""
        self.leases = Leases(engine, self._address(), lambda m: self.say(m, error=True))
        try:
            self.leases.register()
        except BaseException:
            health.stop()
            store.close()
            for lock in self._locks:
                lock.release()
            raise
        return self.leases

    def lose_store(self, reason: str) -> None:
        """The store was deleted, replaced or became unusable: stop acknowledging at once
        (the journal and the health check refuse submits with `store_unavailable`), stop
        running attempts without waiting (nothing they do can be recorded), exit non-zero."""
        if self.store_lost is not None:
            return
        self.store_lost = reason
        self.say(f"STORE LOST: {reason}", error=True)
        mark_lost(self.config, reason)
        self._stopping.set()

    # listening -----------------------------------------------------------------------------

    def _address(self) -> str:
        daemon = self.config.settings.daemon
        return daemon.listen if daemon.transport == "tcp" else str(self.config.socket_path)

    async def _listen(self, service: QueueService) -> None:
        daemon = self.config.settings.daemon
        loop = asyncio.get_running_loop()
        if daemon.transport == "tcp":
            gate = Gate(token=ensure_token(self.config.token_path), allowed_uids=[])
            sock = bind_tcp(daemon.listen)
        else:
            gate = self._unix_gate()
            sock = bind_unix(self.config.socket_path, open_to_others=gate.admits_others)
            self._bound_socket = True

        def make_context(send: Callable[[Reply], None]) -> Context:
            return Context(service=service, send=send)

        def on_error(message: str) -> None:
            self.say(message, error=True)

        def limits() -> ConnectionLimits:  # read again on every sweep: a reload applies
            return ConnectionLimits.of(self.config.settings.daemon)

        connections = self._connections = Connections(limits, gate, make_context, on_error)
        # The backlog again: create_server would listen() anew with its own default (100).
        self._server = await (
            loop.create_server(connections.new_connection, sock=sock, backlog=BACKLOG)
            if daemon.transport == "tcp"
            else loop.create_unix_server(connections.new_connection, sock=sock, backlog=BACKLOG)
        )

    def _unix_gate(self) -> Gate:
        daemon = self.config.settings.daemon
        return Gate(token=None, allowed_uids=daemon.allowed_uids, allowed_gids=daemon.allowed_gids)

    async def _start_services(self) -> None:
        assert self.engine is not None
        self.ops = Ops.of(self.engine, lambda message: self.say(message, error=True))
        self.ops.start()
        if self.service is not None:
            self.service.ops = self.ops
        self._services.append(self.ops)
        if not self.config.settings.dashboard.enabled:
            return
        try:
            from bgjobd.dashboard.server import start_dashboard
        except ImportError:
            return
        self._services.append(await start_dashboard(self))

    # signals -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        """SIGHUP: reopen the logs and apply a changed configuration, if it is valid."""
        self.log.reopen()
        try:
            new = load_config(self.config.path) if self.config.path else self.config
        except ConfigError as exc:
            self.say(f"reload refused, keeping the running configuration: {exc}", error=True)
            return
        old_settings = self.config.settings
        for table, keys in (
            (
                "daemon",
                (
                    "socket",
                    "storage",
                    "transport",
                    "listen",
                    "workers",
                    "fsync",
                    "isolation",
                    "allowed_uids",
                    "allowed_gids",
                    "group",
                ),
            ),
            ("dashboard", ("enabled", "listen", "token", "token_file", "public_metrics")),
        ):
            for key in keys:
                if getattr(getattr(new.settings, table), key) != getattr(
                    getattr(old_settings, table), key
                ):
                    self.log.warning(NO_JOB, f"{table}.{key} changed; it applies after a restart")
        if new.queue_workers != self.config.queue_workers:
            # The pool and each queue's slots are sized once, at the start.
            self.log.warning(NO_JOB, "queues changed; they apply after a restart")
        self.config = new
        self.log.set_format(new.settings.logging.format)
        assert self.engine is not None
        self.engine.reconfigure(new)
        if self._health is not None:
            self._health.reconfigure(new)
        if self.ops is not None:
            self.ops.reconfigure(new)
        self.say("configuration reloaded")

    def _start_watchdog(self) -> asyncio.Task[None] | None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return None

        async def ping() -> None:
            while True:
                sdnotify.notify("WATCHDOG=1")
                await asyncio.sleep(interval)

        return asyncio.create_task(ping())

    # stopping ------------------------------------------------------------------------------

    async def _shutdown(
        self, engine: Engine, pool: WorkerPool, attempts: Attempts, store: DaemonStore
    ) -> bool:
        """Stop everything; returns whether the last writes were committed. From here on
        every request is answered SHUTTING_DOWN (clients fall back), and no new connection
        is accepted; the open ones close before the store does, so that nothing reaches a
        closed store."""
        engine.shutting_down = True
        if self._server is not None:
            self._server.close()
        for service in self._services:
            with contextlib.suppress(Exception):
                await service.stop()
        engine.journal.impatient()
        lost = self.store_lost is not None
        await engine.drain(0 if lost else self.config.settings.daemon.shutdown_timeout)
        if self.leases is not None:
            await self.leases.stop()  # renewed until now: its running jobs were its own
        await attempts.stop_watching_locks()
        await pool.close()
        if self._connections is not None:
            await self._connections.close_all()
        engine.publisher.stop()
        engine.journal.close()
        committed = lost or await self._final_commit(store)
        try:
            store.close()
        except Exception as exc:  # noqa: BLE001  # stopping goes on whatever the store does
            self.say(f"closing the store failed: {exc}", error=True)
        if self._bound_socket:
            with contextlib.suppress(FileNotFoundError):
                self.config.socket_path.unlink()
        for lock in self._locks:
            lock.release()
        return committed

    async def _final_commit(self, store: DaemonStore) -> bool:
        """The last commit, retried a few times (a full disk frees its reserve for it)."""
        for delay in (0.0, 0.1, 0.3, 1.0):
            await asyncio.sleep(delay)
            try:
                if store.in_transaction:
                    store.commit()
                return True
            except Exception as exc:  # noqa: BLE001  # reported; recovery re-runs those jobs
                self.say(f"final commit failed: {exc}", error=True)
                with contextlib.suppress(Exception):
                    store.redo_kept_writes()
        return False


def _per_queue(config: Config) -> str:
    """How the workers divide between named queues, when there are any."""
    if len(config.queue_workers) == 1:
        return ""
    return " for queues " + ", ".join(f"{n} {w}" for n, w in config.queue_workers.items())
