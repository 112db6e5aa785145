"""The daemon, wired in one place: store, journal, workers, engine, socket, dashboard,
signals. `Daemon.run()` serves until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Protocol

from bgjobd import filemodes, locks, sdnotify
from bgjobd.attempts import Attempts
from bgjobd.engine import Engine
from bgjobd.events import EventHub
from bgjobd.handlers.context import Context
from bgjobd.joblog import NO_JOB, JobLog
from bgjobd.journal import Journal
from bgjobd.listen import (
    BACKLOG,
    InstanceLock,
    bind_tcp,
    bind_unix,
    ensure_token,
    socket_directory,
)
from bgjobd.pool import WorkerPool
from bgjobd.recovery import recover
from bgjobd.server import ConnectionLimits, Connections, Gate
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, load_config
from bgjobs.errors import ConfigError
from bgjobs.protocol import Reply


class Service(Protocol):
    """Something the daemon starts after the socket and stops before the workers."""

    async def stop(self) -> None: ...


def owner_name() -> str:
    return f"bgjobd@{socket.gethostname()}"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        # Before any file is made: nothing bgjobd writes is for other users' eyes.
        self.modes = filemodes.modes_of(config)
        filemodes.restrict_umask(self.modes)
        tightened: list[str] = []
        filemodes.prepare_storage(config, self.modes, tightened.append)
        self.log = JobLog(config.logs_dir)
        for message in tightened:
            self.say(message)
        self._stopping = asyncio.Event()
        self._locks: list[InstanceLock] = []
        self._server: asyncio.AbstractServer | None = None
        self._bound_socket = False
        self._services: list[Service] = []
        self._connections: Connections | None = None
        self.engine: Engine | None = None

    def say(self, message: str, *, error: bool = False) -> None:
        """The daemon's own news: to stderr, and to the log files."""
        print(f"bgjobd: {message}", file=sys.stderr, flush=True)
        (self.log.error if error else self.log.info)(NO_JOB, message)

    async def run(self) -> int:
        config = self.config
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
        store = SQLiteStore(
            config.database_path, fsync=config.settings.daemon.fsync, background_checkpoints=True
        )
        journal = Journal(store, lambda message: self.say(message, error=True))
        pool = WorkerPool(
            config,
            size=config.workers,
            on_error=lambda message: self.say(message, error=True),
            after_commit=journal.after_commit,
        )
        owner = owner_name()
        attempts = Attempts(config, pool, self.log, owner)
        self.engine = engine = Engine(
            config=config,
            store=store,
            journal=journal,
            attempts=attempts,
            events=EventHub(),
            joblog=self.log,
            owner=owner,
        )
        try:
            engine.start()
            recovered = recover(engine, began)
            if recovered:
                self.say(f"recovered {recovered} job(s) that were running when bgjobd stopped")
            await pool.start()
            attempts.start_watching_locks()
            await self._listen(engine)
            await self._start_services()
            self._install_signals()
            sdnotify.notify("READY=1")
            watchdog = self._start_watchdog()
            self.say(
                f"started (pid {os.getpid()}, {pool.size} "
                f"{config.settings.daemon.isolation} worker(s), listening on {self._address()})"
            )
            self.say(f"attempts contained by {pool.containment}")
            await self._stopping.wait()
            if watchdog is not None:
                watchdog.cancel()
            sdnotify.notify("STOPPING=1")
            self.say("stopping: no new jobs; waiting for running attempts")
        finally:
            await self._shutdown(engine, pool, attempts, store)
        self.say("stopped")
        return 0

    # listening -----------------------------------------------------------------------------

    def _address(self) -> str:
        daemon = self.config.settings.daemon
        return daemon.listen if daemon.transport == "tcp" else str(self.config.socket_path)

    async def _listen(self, engine: Engine) -> None:
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
            return Context(engine=engine, started_at=self.started_at, send=send)

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
        self.config = new
        assert self.engine is not None
        self.engine.attempts.config = new
        self.engine.attempts.pool.reconfigure(new)
        self.engine.reconfigure(new)
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
        self, engine: Engine, pool: WorkerPool, attempts: Attempts, store: SQLiteStore
    ) -> None:
        # From here on every request is answered SHUTTING_DOWN (clients fall back), and no
        # new connection is accepted; the open ones close before the store does, so that
        # nothing reaches a closed store.
        engine.shutting_down = True
        if self._server is not None:
            self._server.close()
        for service in self._services:
            with contextlib.suppress(Exception):
                await service.stop()
        await engine.drain(self.config.settings.daemon.shutdown_timeout)
        await attempts.stop_watching_locks()
        await pool.close()
        if self._connections is not None:
            await self._connections.close_all()
        store.commit()
        store.close()
        if self._bound_socket:
            with contextlib.suppress(FileNotFoundError):
                self.config.socket_path.unlink()
        for lock in self._locks:
            lock.release()
