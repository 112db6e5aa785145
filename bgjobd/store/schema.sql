-- bgjobs SQLite schema, version 8 (1 lacked jobs.outcome, 2 jobs.idempotency_key, 3 jobs.trace,
-- 4 the batch columns, 5 jobs.cancel_reason and attempts.node, 6 jobs.limit_key, 7 jobs.queue;
-- SQLiteStore adds them, and the indexes on them: jobs_by_key, jobs_batch, jobs_unique_live,
-- jobs_running, jobs_ready_in_queue). Times are Unix
-- epoch seconds (REAL, UTC). Several processes (daemons: nodes; run_job.py) share it.
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- increasing and never reused
    class_name TEXT NOT NULL,
    method TEXT NOT NULL,
    params BLOB NOT NULL,                  -- msgpack array
    priority INTEGER NOT NULL,             -- 0 high, 1 medium, 2 low
    state TEXT NOT NULL,
    run_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 1,      -- 1, then +1 each time a user retries the job
    max_attempts INTEGER NOT NULL,
    timeout REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result BLOB,                           -- msgpack
    error BLOB,                            -- msgpack ErrorInfo
    reason TEXT,
    worker_pid INTEGER,
    owner TEXT NOT NULL DEFAULT '',        -- the node (or runner) of the latest attempt
    chain_id INTEGER,
    chain_position INTEGER,
    chain_length INTEGER,
    unique_key TEXT,
    oneshot INTEGER NOT NULL DEFAULT 0,    -- run by run_job.py, never by the daemon
    outcome TEXT,                          -- how the final attempt ended (see `attempts`)
    idempotency_key TEXT,                  -- the submit's key: one job per key, kept with the job
    trace BLOB,                            -- msgpack {traceparent, tracestate} of the submitter
    batch_id INTEGER,                      -- the batch's callback job's id, on it and its members
    batch_on_failure INTEGER,              -- on a batch's callback: 1 to run it after a failure
    cancel_reason TEXT,                    -- while running: someone asked its node to stop it
    limit_key TEXT NOT NULL DEFAULT '',    -- limits count per (class, key): `limit_by`'s value
    queue TEXT NOT NULL DEFAULT 'default'  -- the named queue whose workers run it
);

-- Scheduled jobs in (run_at, id) order: the next due time. Partial indexes: a job touches
-- them only while it waits, not at every later change of state.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (oneshot, run_at, id) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_class ON jobs (class_name, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_chain ON jobs (chain_id, chain_position) WHERE chain_id IS NOT NULL;
-- Claims take a queue's jobs in (priority, run_at, id) order, whichever process claims:
-- jobs_ready_in_queue (queue, priority, run_at, id), made by SQLiteStore once jobs.queue is
-- there (a schema 6 database gains it first).

-- Every attempt but a job's final one, in the order they ended. The final attempt is
-- described by the job's own row (number = attempts, started_at, finished_at, worker_pid,
-- error, and `outcome`): one statement and two B-tree pages fewer per job. It moves here
-- when a user retries the job. `outcome` is NULL while the job goes on, and in rows of
-- schema 1, whose final attempts have rows here.
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    round INTEGER NOT NULL DEFAULT 1,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    worker_pid INTEGER,
    error BLOB,
    duration REAL,                         -- seconds
    node TEXT                              -- the node (or runner) that ran it
);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job_id, seq);

-- Exact job counts per state, kept by triggers so that stats never scan the jobs table
-- and stay true when several processes (the daemon, run_job.py) write.
CREATE TABLE IF NOT EXISTS state_counts (
    state TEXT PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO state_counts (state, count) VALUES
    ('waiting', 0), ('scheduled', 0), ('queued', 0), ('running', 0),
    ('succeeded', 0), ('failed', 0), ('cancelled', 0);

CREATE TRIGGER IF NOT EXISTS count_insert AFTER INSERT ON jobs BEGIN
    UPDATE state_counts SET count = count + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS count_update AFTER UPDATE OF state ON jobs
    WHEN OLD.state <> NEW.state BEGIN
    UPDATE state_counts SET count = count - 1 WHERE state = OLD.state;
    UPDATE state_counts SET count = count + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER IF NOT EXISTS count_delete AFTER DELETE ON jobs BEGIN
    UPDATE state_counts SET count = count - 1 WHERE state = OLD.state;
END;

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '8');

-- The processes sharing the queue. A node renews its lease while it lives; one whose
-- lease ended is dead, and whoever removes its row reclaims its running jobs.
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    address TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    lease_until REAL NOT NULL,
    workers_busy INTEGER NOT NULL DEFAULT 0,
    workers_total INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Pauses (`bgjobctl pause`): no claim, by any process, takes a job that one names. `kind`
-- is 'all' (name ''), 'class' or 'queue' (a job's queue, once jobs have that column).
CREATE TABLE IF NOT EXISTS pauses (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

-- outputs ----------------------------------------------------------------------------------
-- The end of each attempt's captured output (at most `bgjobd.capture.STORED_TAIL_BYTES`),
-- so that any node can show a job's output, also one whose output file is on another
-- node's disk. Only attempts that printed something have a row. `printed` is the size of
-- the attempt's whole output in its file (the tail is all of it when they are equal);
-- `origin` names the disk that holds that file (host and storage directory).
CREATE TABLE IF NOT EXISTS outputs (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    printed INTEGER NOT NULL,
    origin TEXT NOT NULL,
    tail BLOB NOT NULL,
    PRIMARY KEY (job_id, round, attempt)
);  -- not WITHOUT ROWID: its rows are large

-- rate limits -------------------------------------------------------------------------------
-- The recent starts of rate-limited classes (per limit key), written by the claim that
-- starts an attempt and deleted a while after they leave their window (bgjobd.store.ratewindow).
CREATE TABLE IF NOT EXISTS starts (
    class_name TEXT NOT NULL,
    limit_key TEXT NOT NULL,
    started_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS starts_by_group ON starts (class_name, limit_key, started_at);
