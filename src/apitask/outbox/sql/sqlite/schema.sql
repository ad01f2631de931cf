-- The declared schema of the outbox on SQLite. `Outbox.migrate()` reaches it by
-- applying migrations/*.sql in order; a test checks that both agree.
-- Times are Unix epoch seconds (REAL): one file has one machine's clock.

CREATE TABLE apitask_jobs (
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

-- A repeated idempotency key inserts nothing. Partial: jobs without a key
-- (most) cost no entry here.
CREATE UNIQUE INDEX apitask_jobs_idempotency_key ON apitask_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- What workers claim: due jobs, oldest first.
CREATE INDEX apitask_jobs_ready ON apitask_jobs (run_at, id) WHERE state IN ('queued', 'retrying');
-- Leases to take over when a worker stops heartbeating.
CREATE INDEX apitask_jobs_leased ON apitask_jobs (locked_until) WHERE state = 'running';
-- Retention: finished jobs by age.
CREATE INDEX apitask_jobs_finished ON apitask_jobs (finished_at) WHERE state IN ('succeeded', 'dead');
-- Searches (migration 4): one request's jobs, and failed jobs by state.
CREATE INDEX apitask_jobs_request_id ON apitask_jobs (request_id, id)
    WHERE request_id IS NOT NULL;
CREATE INDEX apitask_jobs_failures ON apitask_jobs (state, id)
    WHERE state = 'retrying' OR state = 'dead';
-- The dashboard's listing pages (migration 5): queued and running jobs by
-- state, and jobs of one type, newest first.
CREATE INDEX apitask_jobs_active ON apitask_jobs (state, id)
    WHERE state = 'queued' OR state = 'running';
CREATE INDEX apitask_jobs_type ON apitask_jobs (type, id);

-- One job's history (migration 5): failed attempts, dead letters, leases taken
-- over, operator retries and cancels; at most 50 per job, deleted with the job.
CREATE TABLE apitask_job_events (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER,
    worker TEXT,
    run_at REAL,
    detail TEXT
);

-- One job's history, newest first; and what a purge deletes with its jobs.
CREATE INDEX apitask_job_events_job ON apitask_job_events (job_id, id);
