-- Named queries of the SQLite outbox store. Each starts with "-- name: x".
-- Times are passed in as :now (epoch seconds): one file, one machine clock.
-- Lists of ids are passed as one JSON array and read with json_each().

-- name: insert
INSERT INTO apitask_jobs (type, payload, idempotency_key, run_at, created_at, request_id)
VALUES (:type, :payload, :idempotency_key, :now + :delay, :now, :request_id)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id

-- name: insert_unkeyed
-- Without a key no conflict is possible (the unique index skips NULLs): a plain
-- insert, about a third cheaper than the one above; the id is the cursor's lastrowid.
INSERT INTO apitask_jobs (type, payload, run_at, created_at, request_id)
VALUES (:type, :payload, :now + :delay, :now, :request_id)

-- name: claim
UPDATE apitask_jobs
SET state = 'running', attempts = attempts + 1, locked_by = :worker, locked_until = :now + :lease
WHERE id IN (
    SELECT id FROM apitask_jobs
    WHERE state IN ('queued', 'retrying') AND run_at <= :now
    ORDER BY run_at, id
    LIMIT :limit
)
RETURNING id, type, payload, state, attempts, run_at, created_at, finished_at,
    idempotency_key, last_error, request_id

-- name: heartbeat
UPDATE apitask_jobs SET locked_until = :now + :lease
WHERE id IN (SELECT value FROM json_each(:ids)) AND locked_by = :worker AND state = 'running'

-- name: reap_events
-- Before reap, in its transaction (the same rows): the worker that lost each job.
INSERT INTO apitask_job_events (job_id, at, kind, attempt, worker, run_at, detail)
SELECT id, :now, 'lease_expired', attempts, locked_by, :now,
    'lease expired; taken over by worker ' || :worker
FROM apitask_jobs
WHERE state = 'running' AND locked_until < :now AND locked_by IS NOT :worker

-- name: reap
UPDATE apitask_jobs
SET state = 'retrying', run_at = :now, locked_by = NULL, locked_until = NULL,
    last_error = 'lease expired: worker ' || coalesce(locked_by, '?') || ' stopped heartbeating'
WHERE state = 'running' AND locked_until < :now AND locked_by IS NOT :worker
RETURNING id

-- name: succeed
-- The payload is erased: a succeeded job never runs again, and a payload is the
-- task's data (a mail's address, code and link). The row keeps its metadata.
UPDATE apitask_jobs
SET state = 'succeeded', finished_at = :now, locked_by = NULL, locked_until = NULL,
    payload = '{}'
WHERE id IN (SELECT value FROM json_each(:ids)) AND locked_by = :worker AND state = 'running'

-- name: succeed_delete_events
-- Before succeed_delete (foreign keys are off here): the events of the jobs it deletes.
DELETE FROM apitask_job_events
WHERE job_id IN (
    SELECT id FROM apitask_jobs
    WHERE id IN (SELECT value FROM json_each(:ids)) AND locked_by = :worker AND state = 'running'
)

-- name: succeed_delete
DELETE FROM apitask_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND locked_by = :worker AND state = 'running'

-- name: schedule_retry
-- Verdict.RETRY: the attempt failed and is to run again after :delay.
UPDATE apitask_jobs
SET state = 'retrying', run_at = :now + :delay, last_error = :error,
    locked_by = NULL, locked_until = NULL
WHERE id = :id AND locked_by = :worker AND state = 'running'

-- name: dead_letter
-- Verdict.DEAD: given up on, with the reason; kept for `apitask outbox retry`.
UPDATE apitask_jobs
SET state = 'dead', finished_at = :now, last_error = :error, locked_by = NULL, locked_until = NULL
WHERE id = :id AND locked_by = :worker AND state = 'running'

-- name: release
UPDATE apitask_jobs
SET state = 'queued', attempts = attempts - 1, locked_by = NULL, locked_until = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND locked_by = :worker AND state = 'running'

-- name: purge_events
-- Before purge, with the same :now: the events of the jobs it deletes.
DELETE FROM apitask_job_events
WHERE job_id IN (
    SELECT id FROM apitask_jobs
    WHERE state = :state AND state IN ('succeeded', 'dead') AND finished_at < :now - :age
)

-- name: purge
-- The IN term repeats the finished-jobs index's WHERE, so the index serves the
-- delete (a bound :state alone cannot prove it); only those states are ever finished.
DELETE FROM apitask_jobs
WHERE state = :state AND state IN ('succeeded', 'dead') AND finished_at < :now - :age

-- name: retry_dead
-- Outbox.retry (`apitask outbox retry`): dead jobs queued again, attempts reset.
UPDATE apitask_jobs
SET state = 'queued', attempts = 0, run_at = :now, finished_at = NULL
WHERE state = 'dead' AND (:all_dead OR id IN (SELECT value FROM json_each(:ids)))
RETURNING id

-- name: stats
SELECT type, state, count(*) AS jobs FROM apitask_jobs GROUP BY type, state ORDER BY type, state

-- name: migrations_table
CREATE TABLE IF NOT EXISTS apitask_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)

-- name: migrations_table_exists
-- A row when the migrations table is there (schema_status reads, never creates).
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apitask_migrations'

-- name: applied_migrations
SELECT version FROM apitask_migrations

-- name: record_migration
INSERT INTO apitask_migrations (version, name, applied_at) VALUES (:version, :name, :now)

-- name: job
SELECT id, type, payload, state, attempts, run_at, created_at, finished_at,
    idempotency_key, last_error, request_id
FROM apitask_jobs WHERE id = :id

-- name: cancel
-- A pending job an operator calls off: dead, with who and why as its reason, so it
-- stays visible (and can be retried); a job a worker holds is not touched.
UPDATE apitask_jobs
SET state = 'dead', finished_at = :now, last_error = :reason
WHERE id IN (SELECT value FROM json_each(:ids)) AND state IN ('queued', 'retrying')
RETURNING id

-- name: oldest_due
-- The claim index (run_at, id) answers it with one entry.
SELECT min(run_at) AS run_at FROM apitask_jobs
WHERE state IN ('queued', 'retrying') AND run_at <= :now

-- name: workers
-- The lease index (locked_until WHERE state = 'running') holds every row read.
SELECT locked_by AS worker, count(*) AS jobs, max(locked_until) AS lease_until,
    min(locked_until) AS oldest_lease_until
FROM apitask_jobs WHERE state = 'running'
GROUP BY locked_by ORDER BY locked_by

-- name: log_events
-- One event for each of :ids (a JSON array), read from the row just changed in
-- the same transaction: its attempt (none once an operator reset it), and when
-- it is due again if it is pending.
INSERT INTO apitask_job_events (job_id, at, kind, attempt, worker, run_at, detail)
SELECT id, :now, :kind, nullif(attempts, 0), :worker,
    CASE WHEN state IN ('queued', 'retrying') THEN run_at END, :detail
FROM apitask_jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: trim_events
-- The bound per job: only the newest :keep events of each of :ids stay.
DELETE FROM apitask_job_events
WHERE job_id IN (SELECT value FROM json_each(:ids)) AND id <= (
    SELECT older.id FROM apitask_job_events AS older
    WHERE older.job_id = apitask_job_events.job_id
    ORDER BY older.id DESC LIMIT 1 OFFSET :keep
)

-- name: events
-- One job's history, newest first (the index (job_id, id) serves it).
SELECT id, job_id, at, kind, attempt, worker, run_at, detail
FROM apitask_job_events WHERE job_id = :id ORDER BY id DESC LIMIT :limit

-- name: count_states
-- Jobs in each state for an operator's page, counted up to :cap: each count
-- reads at most :cap entries of an index of that state (active, failures,
-- finished), never the table, so a million succeeded jobs cost :cap entries.
-- A count at the cap means "more" (StateCounts). The succeeded count repeats
-- the finished index's WHERE, so that SQLite may use it, and orders by it,
-- so that a common state is not read by scanning the table instead.
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM apitask_jobs WHERE state = 'queued' LIMIT :cap) AS c) AS queued,
    (SELECT count(*) FROM (
        SELECT 1 FROM apitask_jobs WHERE state = 'running' LIMIT :cap) AS c) AS running,
    (SELECT count(*) FROM (
        SELECT 1 FROM apitask_jobs WHERE state = 'retrying' LIMIT :cap) AS c) AS retrying,
    (SELECT count(*) FROM (
        SELECT 1 FROM apitask_jobs WHERE state = 'dead' LIMIT :cap) AS c) AS dead,
    (SELECT count(*) FROM (
        SELECT 1 FROM apitask_jobs
        WHERE state = 'succeeded' AND state IN ('succeeded', 'dead')
        ORDER BY finished_at DESC LIMIT :cap) AS c) AS succeeded

-- name: count_types
-- The jobs of the states named true, by type: count_states found few of each
-- (at most the type cap, 1,000 on the dashboard), so each part reads at most
-- that many rows, through the same indexes. A part whose flag is false is
-- skipped before it reads anything.
-- The succeeded part names the finished index: SQLite keeps no statistics of
-- the state column, and a few succeeded jobs among many others must not be
-- looked for by scanning the table.
SELECT state, type, count(*) AS jobs FROM apitask_jobs
WHERE state = 'queued' AND :queued GROUP BY state, type
UNION ALL
SELECT state, type, count(*) AS jobs FROM apitask_jobs
WHERE state = 'running' AND :running GROUP BY state, type
UNION ALL
SELECT state, type, count(*) AS jobs FROM apitask_jobs
WHERE state = 'retrying' AND :retrying GROUP BY state, type
UNION ALL
SELECT state, type, count(*) AS jobs FROM apitask_jobs
WHERE state = 'dead' AND :dead GROUP BY state, type
UNION ALL
SELECT state, type, count(*) AS jobs FROM apitask_jobs INDEXED BY apitask_jobs_finished 
WHERE state = 'succeeded' AND state IN ('succeeded', 'dead') AND :succeeded
GROUP BY state, type
