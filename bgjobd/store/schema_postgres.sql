-- bgjobs PostgreSQL schema, version 3: the tables, columns and meaning of schema.sql (SQLite
-- schema 8), in PostgreSQL's types. Version 1 lacked jobs.limit_key and jobs.queue, version 2
-- jobs.queue: every statement here may run again on an older version's tables, which gain
-- what they lack. PostgresStore applies it inside its own schema (the
-- search_path names it), in one transaction under an advisory lock, so that nodes starting
-- together migrate once. Times are Unix epoch seconds (DOUBLE PRECISION, UTC).
CREATE TABLE IF NOT EXISTS jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- increasing and never reused
    class_name TEXT NOT NULL,
    method TEXT NOT NULL,
    params BYTEA NOT NULL,                 -- msgpack array
    priority SMALLINT NOT NULL,            -- 0 high, 1 medium, 2 low
    state TEXT NOT NULL,
    run_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 1,      -- 1, then +1 each time a user retries the job
    max_attempts INTEGER NOT NULL,
    timeout DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    result BYTEA,                          -- msgpack
    error BYTEA,                           -- msgpack ErrorInfo
    reason TEXT,
    worker_pid INTEGER,
    owner TEXT NOT NULL DEFAULT '',        -- the node (or runner) of the latest attempt
    chain_id BIGINT,
    chain_position INTEGER,
    chain_length INTEGER,
    unique_key TEXT COLLATE "C",
    oneshot BOOLEAN NOT NULL DEFAULT FALSE, -- run by run_job.py, never by a daemon
    outcome TEXT,                          -- how the final attempt ended (see `attempts`)
    idempotency_key TEXT COLLATE "C",      -- byte order: a schedule's keys sort by time
    trace BYTEA,                           -- msgpack {traceparent, tracestate} of the submitter
    batch_id BIGINT,                       -- the batch's callback job's id, on it and its members
    batch_on_failure BOOLEAN,              -- on a batch's callback: run it after a failure
    cancel_reason TEXT,                    -- while running: someone asked its node to stop it
    limit_key TEXT NOT NULL DEFAULT '',    -- limits count per (class, key): `limit_by`'s value
    queue TEXT COLLATE "C" NOT NULL DEFAULT 'default'  -- the named queue whose workers run it
);
-- Version 1 lacked both, version 2 lacked queue.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS limit_key TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS queue TEXT COLLATE "C" NOT NULL DEFAULT 'default';

-- Partial indexes: a job touches them only while it is in their state.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (oneshot, run_at, id) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_class ON jobs (class_name, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_chain ON jobs (chain_id, chain_position) WHERE chain_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, state) WHERE batch_id IS NOT NULL;
-- Claims take a queue's jobs in this order, whichever node claims (version 1's jobs_ready
-- had no queue).
DROP INDEX IF EXISTS jobs_ready;
CREATE INDEX IF NOT EXISTS jobs_ready_in_queue ON jobs (queue, priority, run_at, id)
    WHERE state = 'queued' AND NOT oneshot;
-- A class's running jobs, counted against its limit at each claim of it.
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (class_name) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_cancelling ON jobs (owner)
    WHERE cancel_reason IS NOT NULL AND state = 'running';
-- One job per idempotency key, whatever its state; one live job per unique key: racing
-- submits from any nodes store one job (the constraint names tell KeyTaken from UniqueTaken).
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running', 'scheduled', 'waiting');

-- Every attempt but a job's final one, in the order they ended (the final one is described
-- by the job's row; it moves here when a user retries the job).
CREATE TABLE IF NOT EXISTS attempts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    round INTEGER NOT NULL DEFAULT 1,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    outcome TEXT,
    worker_pid INTEGER,
    error BYTEA,
    duration DOUBLE PRECISION,             -- seconds
    node TEXT                              -- the node (or runner) that ran it
);
CREATE INDEX IF NOT EXISTS attempts_by_job ON attempts (job_id, seq);

-- Exact job counts per state, kept by triggers so that stats never scan the jobs table.
-- Not one row per state as in SQLite: there every write transaction is alone, here one
-- counter row per state would be locked by each writer until its commit, serializing the
-- nodes' claims (and deadlocking two that change states in opposite orders). So each
-- change appends its deltas; a state's count is the sum of its rows, and
-- PostgresStore.counts() folds them into one row per state now and then.
CREATE TABLE IF NOT EXISTS state_counts (
    state TEXT NOT NULL,
    delta BIGINT NOT NULL
);

CREATE OR REPLACE FUNCTION count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_counts (state, delta) VALUES (NEW.state, 1);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_counts (state, delta) VALUES (OLD.state, -1), (NEW.state, 1);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_counts (state, delta) VALUES (OLD.state, -1);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER count_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION count_insert();
CREATE OR REPLACE TRIGGER count_update AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state <> NEW.state) EXECUTE FUNCTION count_update();
CREATE OR REPLACE TRIGGER count_delete AFTER DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION count_delete();

-- Change notices: a change of jobs that another node may act on tells the listeners of this
-- schema's channel (its name: the schema's) at its commit; the notice carries the sender's
-- pid, so that a node ignores its own (PostgresStore.changed). PostgreSQL sends equal
-- notices of one transaction once. Worth a notice: jobs stored, and a job made queued or
-- scheduled (released, retried, reclaimed, requeued) or asked to cancel while it runs. Not
-- a claim, an attempt's end or a deletion, which no other node waits for: a transaction
-- that notifies holds a lock over the whole database until its commit is flushed, so
-- commits that notify are flushed one after the other, where others share a flush.
CREATE OR REPLACE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS jobs_changed ON jobs;
CREATE OR REPLACE TRIGGER jobs_added_notify AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
CREATE OR REPLACE TRIGGER jobs_ready_notify AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('queued', 'scheduled')
        OR (NEW.state = 'running' AND NEW.cancel_reason IS NOT NULL))
    EXECUTE FUNCTION notify_change();

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '4')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- The processes sharing the queue. A node renews its lease while it lives; one whose
-- lease ended is dead, and whoever removes its row reclaims its running jobs.
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT COLLATE "C" PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    address TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL,
    workers_busy INTEGER NOT NULL DEFAULT 0,
    workers_total INTEGER NOT NULL DEFAULT 0
);

-- The end of each attempt's captured output (see schema.sql's `outputs`).
CREATE TABLE IF NOT EXISTS outputs (
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    printed BIGINT NOT NULL,
    origin TEXT NOT NULL,
    tail BYTEA NOT NULL,
    PRIMARY KEY (job_id, round, attempt)
);

-- rate limits -------------------------------------------------------------------------------
-- The recent starts of rate-limited classes (per limit key), written by the claim that
-- starts an attempt (under the group's advisory lock) and deleted a while after they leave
-- their window (bgjobd.store.ratewindow).
CREATE TABLE IF NOT EXISTS starts (
    class_name TEXT NOT NULL,
    limit_key TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS starts_by_group ON starts (class_name, limit_key, started_at);

-- Pauses (see schema.sql's `pauses`). PostgresStore also creates the table in a schema of
-- version 1 made before it existed. A change wakes the other nodes (a resume: claim now).
CREATE TABLE IF NOT EXISTS pauses (
    kind TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE OR REPLACE TRIGGER pauses_changed AFTER INSERT OR UPDATE OR DELETE ON pauses
    FOR EACH STATEMENT EXECUTE FUNCTION notify_change();
