"""This node among the others sharing its store: registered under its name, its lease
renewed by a heartbeat at a third of `[daemon] lease_seconds`; and the reclaiming of the
running jobs of nodes whose lease ran out (each dead node's jobs by exactly one survivor:
the store hands each expired node to one caller).

A node that finds its own lease gone (it was paused past the lease, and another node
reclaimed its jobs) stops every attempt it runs: their ends would be
refused anyway (fencing), and the jobs are already running elsewhere. Then it registers
anew and goes on.

A node that cannot reach its store (PostgreSQL restarting, or out of this host's reach)
cannot renew its lease, and the others may reclaim its jobs once it runs out. So shortly
before its lease ends (CUT_OFF_MARGIN_SECONDS, or a tenth of the lease if shorter) it stops
every attempt it runs, as on a lost lease: their ends are recorded once the store is back
(refused as stale if reclaimed meanwhile). Nothing else is done until then; once the store
answers, the first heartbeat renews the lease (or registers anew, if it was expired), and
that beat expires no other node: those were likely cut off by the same outage.

Lease times are read on the store's clock (`Store.clock`: PostgreSQL's, for nodes on
several hosts), so hosts whose clocks disagree still agree on whose lease has ended; only
how long since this node last renewed is measured here, on its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec.structs import replace

from bgjobd import locks
from bgjobd.engine import Engine
from bgjobd.joblog import NO_JOB
from bgjobd.store.offline import StoreOffline
from bgjobs.errors import ConfigError
from bgjobs.model import NodeInfo

LOST_LEASE = "this node lost its lease (it was stopped or starved past lease_seconds)"
CUT_OFF = "this node cannot reach the store to renew its lease, which is about to run out"
CUT_OFF_MARGIN_SECONDS = 1.0


class Leases:
    def __init__(self, engine: Engine, address: str, say: Callable[[str], None]) -> None:
        self._engine = engine
        self._say = say
        now = time.time()
        self.node = NodeInfo(
            name=engine.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            address=address,
            started_at=_at(now),
            heartbeat_at=_at(now),
            lease_until=_at(now + self._lease),
            workers_total=engine.attempts.pool.size,
        )
        self._task: asyncio.Task[None] | None = None
        self._renewed_at = now
        """When the store last took a heartbeat (the lease runs from then)."""
        self._cut_off = False
        """Whether this node stopped its attempts for want of the store."""

    @property
    def _lease(self) -> float:
        return self._engine.config.settings.daemon.lease_seconds

    def register(self) -> None:
        """Take this node's name in the store. ConfigError if a live process has it."""
        store = self._engine.store
        now = store.clock()
        self.node = replace(self.node, heartbeat_at=_at(now), lease_until=_at(now + self._lease))
        holder = store.register_node(self.node)
        if holder is not None and holder.host == self.node.host and not locks.pid_alive(holder.pid):
            store.leave(holder)  # this host's earlier daemon, killed: its lease is moot
            holder = store.register_node(self.node)
        if holder is not None:
            store.rollback()
            raise ConfigError(
                f"daemon.node: the node name {holder.name!r} is in use by pid {holder.pid} on "
                f"{holder.host} ({holder.address or 'no address'}); give each daemon sharing "
                f"the store its own [daemon] node"
            )
        self._engine.journal.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop renewing and leave the store (after the last attempt has ended)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            self._engine.store.leave(self.node)

    async def _run(self) -> None:
        delay = self._lease / 3
        while True:
            await asyncio.sleep(delay)
            delay = self._lease / 3
            try:
                self.beat()
            except StoreOffline:
                delay = self._offline()
            except Exception as exc:  # noqa: BLE001  # the next beat retries
                self._say(f"heartbeat failed: {exc!r}")

    def _offline(self) -> float:
        """The store cannot be reached (it said so itself): stop this node's attempts
        before its lease runs out, once. Returns when to try the next beat."""
        now = time.time()
        margin = min(CUT_OFF_MARGIN_SECONDS, self._lease / 10)
        stop_at = self._renewed_at + self._lease - margin
        if now < stop_at:
            return min(self._lease / 3, stop_at - now)
        if not self._cut_off:
            self._cut_off = True
            stopped = self._engine.abandon_attempts(CUT_OFF)
            self._say(f"{CUT_OFF}; stopped its {stopped} attempt(s), they go on once it is back")
        return min(self._lease / 3, 1.0)

    def beat(self) -> None:
        engine = self._engine
        here = time.time()
        # Not beaten for a lease: this loop was blocked (or the process stopped), or the
        # store out of reach; either way the others likely were held up too.
        stalled = here - self._renewed_at > self._lease
        # Leases are times on the store's clock (PostgreSQL's, for nodes on several hosts),
        # never this host's: a clock running ahead would find live nodes dead.
        now = engine.store.clock()
        self.node = replace(
            self.node,
            heartbeat_at=_at(now),
            lease_until=_at(now + self._lease),
            workers_busy=engine.busy,
            workers_total=engine.attempts.pool.size,
        )
        renewed = engine.store.heartbeat(self.node)
        self._renewed_at = here
        if self._cut_off:
            self._cut_off = False
            self._say("the store answers again: this node renews its lease and claims again")
        if not renewed:
            stopped = engine.abandon_attempts(LOST_LEASE)
            self._say(f"{LOST_LEASE}; stopped its {stopped} attempt(s) and registers again")
            self.node = replace(self.node, started_at=_at(now))
            self.register()
        if stalled:
            # This node could not beat for a whole lease (its loop was blocked, e.g. on a
            # write lock another node held while stopped; or it was stopped itself): the
            # others were likely held up by the same cause. They get a lease to renew
            # before anyone is declared dead, rather than every node reclaiming the others'.
            self._say("this node went a whole lease without a heartbeat; expiring no node now")
            return
        for dead in engine.store.expire_nodes(now):
            count = engine.reclaim(dead, "stopped renewing its lease")
            engine.log.warning(
                NO_JOB, f"node {dead} is dead (its lease ran out); reclaimed {count} job(s)"
            )
        for owner in engine.store.orphan_owners():
            # Expired by a transaction whose reclaiming was lost with the store (an outage):
            # its jobs would otherwise run for ever under a name nobody renews.
            count = engine.reclaim(owner, "is no live node")
            engine.log.warning(NO_JOB, f"{owner} is no live node but ran {count} job(s): reclaimed")


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
