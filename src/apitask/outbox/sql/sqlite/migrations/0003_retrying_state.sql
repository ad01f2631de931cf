-- 0003: the state "failed" is renamed "retrying" (an attempt failed and a retry
-- is scheduled; final failure is "dead"). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt, rows rewritten on the way
-- (ids kept), and its indexes made again with the new name in their WHERE.

CREATE TABLE apitask_jobs_0003 (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'retrying', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    locked_by TEXT,
    locked_until REAL,
    idempotency_key TEXT,
    last_error TEXT,
    request_id TEXT
);

INSERT INTO apitask_jobs_0003 (
    id, type, payload, state, attempts, run_at, created_at, finished_at,
    locked_by, locked_until, idempotency_key, last_error, request_id
)
SELECT
    id, type, payload, CASE state WHEN 'failed' THEN 'retrying' ELSE state END,
    attempts, run_at, created_at, finished_at,
    locked_by, locked_until, idempotency_key, last_error, request_id
FROM apitask_jobs;

DROP TABLE apitask_jobs;
ALTER TABLE apitask_jobs_0003 RENAME TO apitask_jobs;

CREATE UNIQUE INDEX apitask_jobs_idempotency_key ON apitask_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX apitask_jobs_ready ON apitask_jobs (run_at, id) WHERE state IN ('queued', 'retrying');
CREATE INDEX apitask_jobs_leased ON apitask_jobs (locked_until) WHERE state = 'running';
CREATE INDEX apitask_jobs_finished ON apitask_jobs (finished_at) WHERE state IN ('succeeded', 'dead');
