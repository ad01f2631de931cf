-- Named queries of the PostgreSQL outbox store. Each starts with "-- name: x".
-- Parameters are written :name; the store turns them into asyncpg's $n.

-- name: insert
-- One round trip: the row, and a wake-up for listening workers. NOTIFY is
-- transactional, so a rollback drops both; a repeated idempotency key inserts
-- nothing and notifies nobody.
WITH job AS (
    INSERT INTO apitask_jobs (type, payload, idempotency_key, run_at, request_id)
    VALUES (:type, :payload, :idempotency_key, now() + make_interval(secs => :delay), :request_id)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT id, pg_notify(:channel, '')::text AS notified FROM job

-- name: claim
UPDATE apitask_jobs AS j
SET state = 'running',
    attempts = j.attempts + 1,
    locked_by = :worker,
    locked_until = now() + make_interval(secs => :lease)
FROM (
    SELECT id FROM apitask_jobs
    WHERE state IN ('queued', 'retrying') AND run_at <= now()
    ORDER BY run_at, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE j.id = picked.id
RETURNING j.id, j.type, j.payload, j.state, j.attempts, j.run_at, j.created_at,
    j.finished_at, j.idempotency_key, j.last_error, j.request_id

-- name: heartbeat
UPDATE apitask_jobs SET locked_until = now() + make_interval(secs => :lease)
WHERE id = ANY(:ids::bigint[]) AND locked_by = :worker AND state = 'running'

-- name: reap
-- Jobs whose worker stopped heartbeating: due again at once. The attempt the
-- dead worker made still counts, so a job that kills its worker each time
-- ends in the dead-letter state instead of looping. The reaping worker's own
-- leases are left alone: it is alive, and still owns them. Each job's history
-- gets a lease_expired event naming the worker that lost it.
WITH job AS (
    UPDATE apitask_jobs AS j
    SET state = 'retrying', run_at = now(), locked_by = NULL, locked_until = NULL,
        last_error = 'lease expired: worker ' || coalesce(expired.locked_by, '?')
            || ' stopped heartbeating'
    FROM (
        SELECT id, locked_by FROM apitask_jobs
        WHERE state = 'running' AND locked_until < now() AND locked_by IS DISTINCT FROM :worker
        FOR UPDATE SKIP LOCKED
    ) AS expired
    WHERE j.id = expired.id
    RETURNING j.id, j.attempts, j.run_at, expired.locked_by AS lost_by
),
    -- The bound per job: the statement sees the events before its own insert,
    -- so keeping :keep - 1 of them leaves :keep with the new one.
    trimmed AS (
        DELETE FROM apitask_job_events AS e
        WHERE e.job_id IN (SELECT id FROM job) AND e.id <= (
            SELECT older.id FROM apitask_job_events AS older
            WHERE older.job_id = e.job_id
            ORDER BY older.id DESC OFFSET :keep::integer - 1 LIMIT 1
        )
    ),
    logged AS (
        INSERT INTO apitask_job_events (job_id, kind, attempt, worker, run_at, detail)
        SELECT id, 'lease_expired', attempts, lost_by, run_at,
            'lease expired; taken over by worker ' || :worker::text
        FROM job
    )
SELECT id FROM job

-- name: succeed
-- The payload is erased: a succeeded job never runs again, and a payload is the
-- task's data (a mail's address, code and link). The row keeps its metadata.
UPDATE apitask_jobs
SET state = 'succeeded', finished_at = now(), locked_by = NULL, locked_until = NULL,
    payload = '{}'
WHERE id = ANY(:ids::bigint[]) AND locked_by = :worker AND state = 'running'

-- name: succeed_delete
DELETE FROM apitask_jobs
WHERE id = ANY(:ids::bigint[]) AND locked_by = :worker AND state = 'running'

-- name: schedule_retry
-- Verdict.RETRY: the attempt failed and is to run again after :delay; the
-- history gets a failed event in the same statement (no extra round trip).
WITH job AS (
    UPDATE apitask_jobs
    SET state = 'retrying', run_at = now() + make_interval(secs => :delay), last_error = :error,
        locked_by = NULL, locked_until = NULL
    WHERE id = :id AND locked_by = :worker AND state = 'running'
    RETURNING id, attempts, run_at
),
    -- The bound per job: the statement sees the events before its own insert,
    -- so keeping :keep - 1 of them leaves :keep with the new one.
    trimmed AS (
        DELETE FROM apitask_job_events AS e
        WHERE e.job_id IN (SELECT id FROM job) AND e.id <= (
            SELECT older.id FROM apitask_job_events AS older
            WHERE older.job_id = e.job_id
            ORDER BY older.id DESC OFFSET :keep::integer - 1 LIMIT 1
        )
    )
INSERT INTO apitask_job_events (job_id, kind, attempt, worker, run_at, detail)
SELECT id, 'failed', attempts, :worker::text, run_at, :error::text FROM job

-- name: dead_letter
-- Verdict.DEAD: given up on, with the reason; kept for `apitask outbox retry`.
WITH job AS (
    UPDATE apitask_jobs
    SET state = 'dead', finished_at = now(), last_error = :error,
        locked_by = NULL, locked_until = NULL
    WHERE id = :id AND locked_by = :worker AND state = 'running'
    RETURNING id, attempts
),
    -- The bound per job: the statement sees the events before its own insert,
    -- so keeping :keep - 1 of them leaves :keep with the new one.
    trimmed AS (
        DELETE FROM apitask_job_events AS e
        WHERE e.job_id IN (SELECT id FROM job) AND e.id <= (
            SELECT older.id FROM apitask_job_events AS older
            WHERE older.job_id = e.job_id
            ORDER BY older.id DESC OFFSET :keep::integer - 1 LIMIT 1
        )
    )
INSERT INTO apitask_job_events (job_id, kind, attempt, worker, detail)
SELECT id, 'dead', attempts, :worker::text, :error::text FROM job

-- name: release
-- A job cancelled by a shutdown: due again at once, and the interrupted
-- attempt does not count.
UPDATE apitask_jobs
SET state = 'queued', attempts = attempts - 1, locked_by = NULL, locked_until = NULL
WHERE id = ANY(:ids::bigint[]) AND locked_by = :worker AND state = 'running'

-- name: purge
-- The IN term repeats the finished-jobs index's WHERE, so the index serves the
-- delete under a generic plan too; only those states are ever finished.
DELETE FROM apitask_jobs
WHERE state = :state AND state IN ('succeeded', 'dead')
    AND finished_at < now() - make_interval(secs => :age)

-- name: retry_dead
-- Outbox.retry (`apitask outbox retry`): dead jobs queued again, attempts reset;
-- each gets a retried event saying who (:by). Returns how many.
WITH job AS (
    UPDATE apitask_jobs
    SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL
    WHERE state = 'dead' AND (:all_dead OR id = ANY(:ids::bigint[]))
    RETURNING id, run_at
),
    -- The bound per job: the statement sees the events before its own insert,
    -- so keeping :keep - 1 of them leaves :keep with the new one.
    trimmed AS (
        DELETE FROM apitask_job_events AS e
        WHERE e.job_id IN (SELECT id FROM job) AND e.id <= (
            SELECT older.id FROM apitask_job_events AS older
            WHERE older.job_id = e.job_id
            ORDER BY older.id DESC OFFSET :keep::integer - 1 LIMIT 1
        )
    ),
    logged AS (
        INSERT INTO apitask_job_events (job_id, kind, run_at, detail)
        SELECT id, 'retried', run_at, :by::text FROM job
    )
SELECT count(*) AS jobs FROM job

-- name: stats
SELECT type, state, count(*) AS jobs FROM apitask_jobs GROUP BY type, state ORDER BY type, state

-- name: migrations_table
CREATE TABLE IF NOT EXISTS apitask_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrations_lock
-- Many workers may start at once: one of them migrates, the others wait.
SELECT pg_advisory_xact_lock(hashtext(:lock_name))

-- name: migrations_table_exists
-- True when the migrations table is there (schema_status reads, never creates).
-- The store's schema prefix is applied inside the literal too, so to_regclass
-- looks in that schema ('"jobs".apitask_migrations'), else on the search_path.
SELECT to_regclass('apitask_migrations') IS NOT NULL

-- name: applied_migrations
SELECT version FROM apitask_migrations

-- name: record_migration
INSERT INTO apitask_migrations (version, name) VALUES (:version, :name)

-- name: job
SELECT id, type, payload, state, attempts, run_at, created_at, finished_at,
    idempotency_key, last_error, request_id
FROM apitask_jobs WHERE id = :id

-- name: cancel
-- A pending job an operator calls off: dead, with who and why as its reason, so it
-- stays visible (and can be retried); a job a worker holds is not touched. Each
-- gets a cancelled event. Returns how many.
WITH job AS (
    UPDATE apitask_jobs
    SET state = 'dead', finished_at = now(), last_error = :reason
    WHERE id = ANY(:ids::bigint[]) AND state IN ('queued', 'retrying')
    RETURNING id, attempts
),
    -- The bound per job: the statement sees the events before its own insert,
    -- so keeping :keep - 1 of them leaves :keep with the new one.
    trimmed AS (
        DELETE FROM apitask_job_events AS e
        WHERE e.job_id IN (SELECT id FROM job) AND e.id <= (
            SELECT older.id FROM apitask_job_events AS older
            WHERE older.job_id = e.job_id
            ORDER BY older.id DESC OFFSET :keep::integer - 1 LIMIT 1
        )
    ),
    logged AS (
        INSERT INTO apitask_job_events (job_id, kind, attempt, detail)
        SELECT id, 'cancelled', nullif(attempts, 0), :reason::text FROM job
    )
SELECT count(*) AS jobs FROM job

-- name: oldest_due
-- The claim index (run_at, id) answers it with one entry.
SELECT min(run_at) AS run_at FROM apitask_jobs
WHERE state IN ('queued', 'retrying') AND run_at <= now()

-- name: workers
-- The lease index (locked_until WHERE state = 'running') holds every row read.
SELECT locked_by AS worker, count(*) AS jobs, max(locked_until) AS lease_until,
    min(locked_until) AS oldest_lease_until
FROM apitask_jobs WHERE state = 'running'
GROUP BY locked_by ORDER BY locked_by

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
SELECT state, type, count(*) AS jobs FROM apitask_jobs 
WHERE state = 'succeeded' AND state IN ('succeeded', 'dead') AND :succeeded
GROUP BY state, type

-- name: state_estimates
-- The planner's statistics (as of the table's last ANALYZE, which autovacuum
-- runs as the table changes): its row count, and the share of each common
-- state. Read from the catalog, not the table: instant at any size, and
-- approximate. The schema prefix lands in the regclass literal too.
SELECT c.reltuples::bigint AS total,
    s.most_common_vals::text::text[] AS states, s.most_common_freqs AS shares
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stats AS s
    ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'state'
WHERE c.oid = 'apitask_jobs'::regclass
