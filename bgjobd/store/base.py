"""The store interface: every backend passes the contract suite in tests/store/.

Calls are synchronous and belong to one open transaction until `commit()`; the daemon's
journal commits once per event-loop iteration, so concurrent submits share one commit.
The methods are the job's state transitions, each applied only from the state it expects
(a cancelled job is never claimed, a claimed one never claimed twice), so that a second
backend shared by several hosts keeps the same guarantees.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bgjobs.model import (
    DEFAULT_QUEUE,
    ErrorInfo,
    JobInfo,
    JobState,
    NodeInfo,
    Outcome,
    PauseInfo,
    PauseKind,
    Priority,
)
from bgjobs.rates import Rate


@dataclass(slots=True)
class NewJob:
    """A row to store. Never changed once built (a changed one is `dataclasses.replace`d):
    not frozen only because a frozen dataclass takes five times as long to build, and a
    bulk submit builds a hundred thousand of them."""

    class_name: str
    method: str
    params: list[Any]
    priority: Priority
    state: JobState
    """WAITING (a later chain link), SCHEDULED (due later), QUEUED (due now), or RUNNING:
    due now and already given to a worker (`started_at`, `worker_pid`), its first attempt
    under way, so that no claim follows."""
    run_at: float
    max_attempts: int
    timeout: float
    created_at: float
    owner: str = ""
    chain_position: int | None = None
    chain_length: int | None = None
    unique_key: str | None = None
    key: str | None = None
    """The submit's idempotency key (first link only): unique in the store for as long as
    the job is kept, whatever its state."""
    oneshot: bool = False
    """Run by `run_job.py` in the foreground: the daemon never schedules it."""
    started_at: float | None = None
    worker_pid: int | None = None
    trace: dict[str, str] | None = None
    """The submitter's W3C trace context (`JobSpec.trace`), handed to every attempt."""
    batch_callback: bool = False
    """The first row of a batch: the callback (WAITING), the rows after it its members.
    Its id becomes the batch's id, stored on it and on every member."""
    run_callback_on_failure: bool = False
    """On a batch's callback: run it even when a member did not succeed."""
    limit_key: str = ""
    """What the class's limits count per (`limit_by`: a digest of one parameter's value);
    "" counts the whole class. Claims count running jobs and starts per (class, key)."""
    queue: str = DEFAULT_QUEUE
    """The named queue whose workers run it (`[queues.NAME]`)."""


@dataclass(frozen=True)
class Added:
    """What `Store.submit` stored."""

    ids: list[int]
    started: bool
    """The first row went in as running (the fast path), not as queued."""
    committed: bool
    """The rows were committed on their own already (no commit of the caller's needed)."""


def as_queued(row: NewJob) -> NewJob:
    """A fast-path row (RUNNING, its worker given) as the plain queued row it stands for."""
    return replace(row, state=JobState.QUEUED, started_at=None, worker_pid=None)


@dataclass(frozen=True)
class PruneRules:
    """What retention lets go: final jobs finished before these times (epoch seconds; None
    keeps that state), beyond the newest `max_finished` final jobs, except `keep_keys`."""

    finished_before: dict[JobState, float]
    max_finished: int | None = None
    keep_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PrunedJob:
    job_id: int
    state: JobState


class KeyTaken(Exception):
    """A job with this idempotency key is already stored (by this process or another)."""

    def __init__(self, key: str, job_ids: list[int]) -> None:
        super().__init__(f"a job with idempotency key {key!r} exists: {job_ids[0]}")
        self.job_ids = job_ids
        """The stored job's id and its chain's later links', in order."""


class UniqueTaken(Exception):
    """A `unique` job equal to this one is still waiting or running (the store's unique
    constraint said so: another process may have stored it a moment ago)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"an equal unique job is live: {job_id}")
        self.job_id = job_id


class StaleAttempt(Exception):
    """An attempt's end reported by a runner that no longer holds the job: its node lost
    its lease and another reclaimed the job (fencing). Nothing was recorded."""


@dataclass(frozen=True)
class JobQuery:
    states: Sequence[JobState] = ()
    class_name: str | None = None
    search: str | None = None
    queue: str | None = None
    limit: int = 50
    offset: int = 0
    oldest_first: bool = False


@dataclass(frozen=True)
class WaitingEntry:
    """What the scheduler keeps in memory about a job that waits for its time or a worker."""

    run_at: float
    job_id: int
    rank: int
    class_name: str

    @classmethod
    def of(cls, job: JobInfo, run_at: float | None = None) -> WaitingEntry:
        """The entry of a job, due at its own `run_at` unless another is given."""
        due = job.run_at.timestamp() if run_at is None else run_at
        return cls(due, job.id, job.priority.rank, job.class_name)


def in_claim_order(entries: list[WaitingEntry], limit: int) -> list[WaitingEntry]:
    """The first `limit` of several queues' queued jobs, as one queue would order them
    (priority, due time, id): how the dashboard lists them all."""
    return sorted(entries, key=lambda entry: (entry.rank, entry.run_at, entry.job_id))[:limit]


@dataclass(frozen=True)
class RateUse:
    """A rate-limited class's window ending now."""

    class_name: str
    started: int
    """Its starts within the window, every limit key's."""
    keys: int
    """The limit keys that started within it (1 at most without `limit_by`)."""
    full: int
    """Of those, the keys at their rate: their next job waits for a start to free."""
    held: int
    """Queued jobs of the full keys (counted up to HELD_COUNT_CAP)."""
    next_slot: float | None
    """When the first full key frees a start; None if none is full."""


HELD_COUNT_CAP = 10_000
"""`RateUse.held` counts up to this many: the figure stays cheap on a long queue."""


@dataclass(frozen=True)
class FinishedAttempt:
    number: int
    outcome: Outcome
    finished_at: float
    duration: float
    error: ErrorInfo | None = None
    owner: str | None = None
    """The runner reporting it: given, the end is recorded only while that runner still
    holds this attempt of the job (else StaleAttempt); None skips the check."""
    round: int | None = None
    """With `owner`: the round the attempt belongs to (a user's retry starts the numbers
    again, so the number alone does not name one attempt)."""


class Store(abc.ABC):
    on_begin: Callable[[], None] | None = None
    """Called when a write opens a transaction, so that whoever commits learns it must."""

    # transactions ------------------------------------------------------------------------

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    @property
    @abc.abstractmethod
    def in_transaction(self) -> bool:
        """Whether writes wait for a commit."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # submitting ----------------------------------------------------------------------------

    @abc.abstractmethod
    def add(self, links: Sequence[NewJob]) -> list[int]:
        """Insert a job, or a chain (links in order, sharing the first id as chain id), or a
        batch (its callback first: its id is the batch id of every row).
        A RUNNING job starts its first attempt at once, as if claimed. Raises KeyTaken,
        inserting nothing, when the first link's idempotency key is already stored."""

    def submit(self, links: Sequence[NewJob], *, alone: bool = False) -> Added:
        """`add`, for a client's submit. A first row stored RUNNING (the fast path: its
        worker is given) goes in as queued instead (`as_queued`) when any pause is stored:
        only a claim checks pauses, and a pause committed before this call, by any process,
        holds for the job (`Added.started`). With `alone` (nothing else of the caller's
        awaits a commit), a backend may commit the rows at once on their own, when no
        transaction is open, if that is quicker than a commit of the caller's: it says so
        (`Added.committed`). Raises as `add` does."""
        started = links[0].state is JobState.RUNNING
        if started and self.any_paused():
            links = [as_queued(links[0]), *links[1:]]
            started = False
        return Added(self.add(links), started=started, committed=False)

    def add_each(self, jobs: Sequence[NewJob]) -> list[int] | None:
        """Insert single jobs (no chain, no batch, none running), a row each, all or none,
        for a bulk submit: their ids in order; or None, inserting nothing, when one of them
        conflicts (an idempotency key or a live unique key stored already) or the backend
        has no quicker way than `add` for each, which the caller then does."""
        return None

    @abc.abstractmethod
    def find_by_key(self, key: str) -> list[int] | None:
        """The ids of the job stored with this idempotency key (then its chain's later
        links), whatever its state; None if there is none."""

    @abc.abstractmethod
    def find_live_unique(self, unique_key: str) -> int | None:
        """The id of a job with this key that is still waiting or running."""

    # reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, job_id: int) -> JobInfo | None:
        """The job with its attempt history."""

    @abc.abstractmethod
    def states_of(self, job_ids: Sequence[int]) -> dict[int, tuple[JobState, int]]:
        """The state and attempt count of each of these jobs the store has (by id): a cheap
        look at jobs that clients wait for, which another process may be changing."""

    @abc.abstractmethod
    def search(self, query: JobQuery) -> tuple[list[JobInfo], int]:
        """Matching jobs (newest first unless asked otherwise) and how many match in all."""

    @abc.abstractmethod
    def counts(self) -> dict[JobState, int]: ...

    @abc.abstractmethod
    def batch_members(self, batch_id: int) -> list[JobInfo]:
        """Every member of a batch (not its callback), in submit order."""

    @abc.abstractmethod
    def batch_pending(self, batch_id: int) -> bool:
        """Whether a member of the batch is not final yet."""

    @abc.abstractmethod
    def chain(self, chain_id: int) -> list[JobInfo]:
        """Every link of a chain, in order."""

    @abc.abstractmethod
    def unfinished_oneshots(self) -> list[JobInfo]:
        """Jobs of `run_job.py` processes that are not final (their runner may be gone)."""

    @abc.abstractmethod
    def scheduled(self, after: tuple[float, int] | None, limit: int) -> list[WaitingEntry]:
        """The daemon's scheduled jobs in (run_at, id) order, starting after the given key."""

    @abc.abstractmethod
    def queued(self) -> list[WaitingEntry]:
        """Every queued job of the daemon's."""

    @abc.abstractmethod
    def running(self, owner: str | None = None) -> list[JobInfo]:
        """Running jobs, of one owner or of all."""

    @abc.abstractmethod
    def finished_per_minute(self, since: float) -> list[tuple[int, JobState, int]]:
        """(minute as epoch // 60, final state, count) for jobs finished since then."""

    # transitions ---------------------------------------------------------------------------

    @abc.abstractmethod
    def promote(self, job_ids: Sequence[int]) -> list[int]:
        """scheduled -> queued for those still scheduled; returns them."""

    @abc.abstractmethod
    def claim(
        self,
        job_id: int,
        owner: str,
        worker_pid: int | None,
        now: float,
        *,
        limit: int | None = None,
        rate: Rate | None = None,
    ) -> JobInfo | None:
        """queued, or scheduled and due by `now` -> running, starting the next attempt;
        None if the job is in neither state, or (`limit`) if that many jobs of its class
        (and limit key) run already, in any process, or (`rate`) if its class (and limit
        key) started that many within the rate's window."""

    @abc.abstractmethod
    def claim_oneshot(
        self, job_id: int, owner: str, worker_pid: int | None, now: float
    ) -> JobInfo | None:
        """`claim`, for a one-shot runner: None also once the daemon has taken the job
        over (`adopt`), so that a job is never run by both."""

    @abc.abstractmethod
    def adopt(
        self, job_ids: Sequence[int], owner: str
    ) -> list[tuple[WaitingEntry, JobState]] | None:
        """One-shot jobs (a fallback drainer's, these links of one chain) become `owner`'s
        regular jobs, in one write: the waiting ones (queued, scheduled, waiting) change
        owner. Returns the queued and scheduled ones for the scheduler; None, changing
        nothing, while one of them is running."""

    @abc.abstractmethod
    def finish_attempt(
        self,
        job_id: int,
        attempt: FinishedAttempt,
        state: JobState,
        *,
        result: Any = None,
        run_at: float | None = None,
        max_attempts: int | None = None,
        reason: str | None = None,
        count_attempt: bool = True,
    ) -> JobInfo:
        """Record how a running attempt ended and move the job on: to a final state, to
        SCHEDULED (a retry at `run_at`) or QUEUED. `count_attempt=False` gives the attempt
        back (a shutdown interrupted it through no fault of the job)."""

    @abc.abstractmethod
    def cancel_waiting(self, job_id: int, reason: str, now: float) -> JobInfo | None:
        """A waiting/scheduled/queued job -> cancelled; None if it is in no such state."""

    @abc.abstractmethod
    def mark_cancelled(self, job_ids: Sequence[int], reason: str, now: float) -> list[int]:
        """Waiting/scheduled/queued jobs among these -> cancelled; returns them."""

    @abc.abstractmethod
    def requeue(self, job_id: int, now: float) -> JobInfo | None:
        """A failed or cancelled job -> queued, due now, with fresh attempts (a new round);
        None if the job is in neither state. Raises UniqueTaken, changing nothing, for a
        `unique` job while an equal one is live."""

    @abc.abstractmethod
    def set_waiting(self, job_ids: Sequence[int]) -> None:
        """Cancelled chain links -> waiting again (their chain is being retried)."""

    @abc.abstractmethod
    def release_link(self, job_id: int, params: list[Any], now: float) -> JobInfo | None:
        """A waiting chain link -> queued with these params; None if it is not waiting."""

    # the shared queue ------------------------------------------------------------------------

    @abc.abstractmethod
    def claim_next(
        self,
        owner: str,
        worker_pid: int | None,
        now: float,
        limits: Mapping[str, int],
        rates: Mapping[str, Rate] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
    ) -> JobInfo | None:
        """Take the first queued job of `queue` (priority, then due time, then id) whose
        class is under its limit (`limits`: class -> most running at once, counted over
        every runner sharing the store, whatever their queues) and its rate (`rates`:
        class -> most starts within any window of the rate's length, counted over every
        runner), and that no pause holds back (`pauses`: all, its class or its queue), and
        start its next attempt as `owner`'s; None if there is none. Limits and rates count
        per (class, limit key). Atomic against every other process sharing the store."""

    def claim_batch(
        self,
        owner: str,
        worker_pids: Sequence[int],
        now: float,
        limits: Mapping[str, int],
        rates: Mapping[str, Rate] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
    ) -> list[JobInfo]:
        """`claim_next` for each of `worker_pids` in turn, up to the first the queue has no
        job for: the jobs started, each naming its worker (`worker_pid`), in claim order.
        A store may claim them all at once (PostgreSQL, in one statement, when no class has
        a limit or a rate); the jobs and their order are those of the claims one by one."""
        return claim_each(
            lambda worker_pid: self.claim_next(owner, worker_pid, now, limits, rates, queue=queue),
            worker_pids,
        )

    def claim_along_next_end(self, owner: str, worker_pid: int, queue: str, now: float) -> bool:
        """Ask that the next final end of an attempt recorded here (`finish_attempt`) also
        claims the next queued job of `queue` for `worker_pid` (as `claim_batch` would, with
        no limit or rate), in the same round trip to the server: the worker's next job
        costs no wait of its own. `claimed_along()` then has it. False, asking nothing,
        where a store has no round trips to save (SQLite)."""
        return False

    def claimed_along(self) -> JobInfo | None:
        """The job claimed along with an attempt's end since `claim_along_next_end`, if
        any (claimed even when the end was refused as stale: it is the caller's to run).
        Ends the request either way."""
        return None

    @abc.abstractmethod
    def next_rate_slot(
        self, rates: Mapping[str, Rate], now: float, job_id: int | None = None
    ) -> float | None:
        """When a job held back by its rate (the daemon's queued jobs, or this one job)
        may start next: the earliest time a window frees a start for one of them; None if
        no such job waits for its rate."""

    @abc.abstractmethod
    def rate_use(self, rates: Mapping[str, Rate], now: float) -> list[RateUse]:
        """For each class of `rates` (in that order), how much of its window ending at `now`
        is used, counted over every process sharing the store: see `RateUse`."""

    @abc.abstractmethod
    def forget_starts(self, rates: Mapping[str, Rate], now: float, limit: int) -> int:
        """Delete at most `limit` counted starts that no claim counts any more: a class's of
        `rates` once `ratewindow.prune_before` its rate, any other class's (a rate since
        removed, a limit key that never started again) once it is before that of the
        longest rate there is. Returns how many went."""

    @abc.abstractmethod
    def promote_due(self, now: float) -> list[int]:
        """Scheduled jobs due by `now` -> queued; returns their ids."""

    @abc.abstractmethod
    def next_due(self) -> float | None:
        """The earliest due time of a scheduled job (daemon-run), if any."""

    @abc.abstractmethod
    def queued_in_order(self, limit: int, queue: str | None = None) -> list[WaitingEntry]:
        """The first queued jobs of `queue` in the order claims take them; of every queue
        (None), the first by that same order across them."""

    @abc.abstractmethod
    def queued_per_queue(self) -> dict[str, int]:
        """How many jobs are queued in each queue that has any."""

    @abc.abstractmethod
    def attempt_is_current(
        self, job_id: int, owner: str, number: int, round_number: int | None = None
    ) -> bool:
        """Whether `owner` still runs attempt `number` (of round `round_number`, if given)
        of the job. Opens the write transaction, so that the check holds until the
        commit."""

    @abc.abstractmethod
    def request_cancel(self, job_id: int, reason: str) -> str | None:
        """Ask the runner of a running job to stop it; returns that runner's name, or None
        if the job is not running."""

    @abc.abstractmethod
    def cancel_requests(self, owner: str) -> list[tuple[int, str]]:
        """(job id, reason) of `owner`'s running jobs that someone asked to cancel."""

    def changed(self) -> bool:
        """Whether another process committed since the last call (cheap: polled)."""
        return True

    pushes_notices: bool = False
    """Whether another process's commit is pushed to us (`notice_socket`), so that
    `changed()` is only a safety poll (`bgjobd.notices`)."""
    on_news: Callable[[], None] | None = None
    """Called when a notice of another process's commit was read along with the answer to
    a statement (inside that call: it may only schedule a look, `read_notices`)."""

    def notice_socket(self) -> int | None:
        """The socket that becomes readable when another process's notice arrives, while
        there is one to watch (connected); None otherwise."""
        return None

    def read_notices(self) -> bool:
        """Whether the notices that arrived (read without a round trip) tell of another
        process's commit since the last call of this or `changed()`."""
        return False

    def lost_claims(self) -> list[int]:
        """Jobs whose claim by this process was lost with a transaction the server dropped
        and could not be made again (another process has the job now): the attempts begun
        for them must stop. Each job is told once. SQLiteStore reports none: it redoes a
        failed commit's writes at once, on the same file, rather than after a reconnection."""
        return []

    # nodes ---------------------------------------------------------------------------------

    def clock(self) -> float:
        """Now, in epoch seconds, on the clock that judges the nodes' leases: one clock
        that every node sharing the store reads alike. Here (one host's file), this host's;
        a store on a server (PostgresStore) reads the server's, so that a host whose clock
        runs ahead does not find the others' leases ended (and reclaim jobs they still run),
        nor one whose clock lags keep its own past its end."""
        return time.time()

    @abc.abstractmethod
    def register_node(self, node: NodeInfo) -> NodeInfo | None:
        """Add this node (or replace a dead one of its name). Returns, changing nothing,
        the live node (another process, lease not expired) that already has the name."""

    @abc.abstractmethod
    def heartbeat(self, node: NodeInfo) -> bool:
        """Renew the node's lease (`lease_until`, `heartbeat_at`, its worker counts);
        False if it no longer holds it (it was declared dead and its jobs reclaimed)."""

    @abc.abstractmethod
    def expire_nodes(self, now: float) -> list[str]:
        """Remove nodes whose lease ended before `now`; returns their names, each to one
        caller only (whose duty it is to reclaim their running jobs)."""

    @abc.abstractmethod
    def orphan_owners(self) -> list[str]:
        """The runners named by running jobs (not one-shot ones) that are no live node: a
        node expired by a transaction that was lost before the reclaiming of its jobs was
        (a store outage), say. Their jobs are reclaimed as a dead node's are."""

    @abc.abstractmethod
    def leave(self, node: NodeInfo) -> None:
        """The node stops (cleanly): its row goes."""

    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]:
        """The registered nodes, by name."""

    # schedules and retention ----------------------------------------------------------------

    @abc.abstractmethod
    def latest_key(self, prefix: str) -> str | None:
        """The greatest idempotency key that starts with `prefix` (a schedule's latest tick:
        its keys sort by time)."""

    @abc.abstractmethod
    def prune(self, rules: PruneRules, limit: int, *, dry_run: bool = False) -> list[PrunedJob]:
        """Delete at most `limit` jobs that the rules let go, with their attempts; returns
        them (ids and states), so that their output files can go too. Only final jobs, and
        no chain link while any link of its chain is not final, and never a job whose key
        is in `rules.keep_keys`. `dry_run` deletes nothing."""

    @abc.abstractmethod
    def attempt_rows(self, job_ids: Sequence[int]) -> int:
        """How many earlier-attempt rows these jobs have (what pruning them removes)."""

    def log_size(self) -> int:
        """Bytes of the write-ahead log (0 for a backend without one)."""
        return 0

    def truncate_log(self) -> bool:
        """Give back the space of a write-ahead log (a backend without one: nothing to do).
        Blocking: run it on a thread."""
        return True

    # pauses ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def pause(self, kind: PauseKind, name: str, now: float) -> bool:
        """Store a pause (`name` empty for ALL): from its commit no `claim_next` of any
        process takes a job it names (running ones go on). False if it was there already."""

    @abc.abstractmethod
    def resume(self, kind: PauseKind, name: str) -> bool:
        """Remove a pause; False if there was none."""

    @abc.abstractmethod
    def pauses(self) -> list[PauseInfo]:
        """The pauses in force, by kind and name."""

    def any_paused(self) -> bool:
        """Whether any pause is in force (a submit's fast path asks this every time)."""
        return bool(self.pauses())

    # bulk actions ----------------------------------------------------------------------------

    @abc.abstractmethod
    def matching_ids(self, query: JobQuery, after: int, limit: int) -> list[int]:
        """The ids above `after` of the jobs matching `query` (its states, class and
        search; not its paging), in id order, at most `limit`: a bulk action's next page,
        stable while the action changes the states of those before it."""

    # outputs -------------------------------------------------------------------------------

    @abc.abstractmethod
    def keep_output(self, job_id: int, attempt: int, output: AttemptOutput) -> None:
        """Keep the end of a running attempt's output with it (in its job's current round;
        an attempt given back and run again replaces it). Called only for attempts that
        printed something."""

    @abc.abstractmethod
    def output_origins(self, job_id: int) -> set[str]:
        """The origins (`AttemptOutput.origin`) of the job's stored outputs, without reading
        them: whether this node's output file holds all of them."""

    @abc.abstractmethod
    def stored_outputs(self, job_id: int) -> list[StoredOutput]:
        """The job's stored outputs, in the order their attempts ran."""


@dataclass(frozen=True)
class AttemptOutput:
    """The end of what one attempt printed."""

    tail: bytes
    """At most `bgjobd.capture.STORED_TAIL_BYTES`."""
    printed: int
    """Bytes of the attempt's whole output in its file."""
    origin: str
    """The disk that holds that file: host and storage directory."""


@dataclass(frozen=True)
class StoredOutput:
    round: int
    attempt: int
    output: AttemptOutput


def claim_each(claim: Callable[[int], JobInfo | None], worker_pids: Sequence[int]) -> list[JobInfo]:
    """`claim` for each worker in turn, up to the first it has no job for: the jobs."""
    jobs: list[JobInfo] = []
    for worker_pid in worker_pids:
        job = claim(worker_pid)
        if job is None:
            break
        jobs.append(job)
    return jobs
