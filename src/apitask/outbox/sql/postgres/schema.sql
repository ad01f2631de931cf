-- The declared schema of the outbox on PostgreSQL. `Outbox.migrate()` reaches
-- it by applying migrations/*.sql in order; a test checks that both agree.
-- Times come from the database clock (now()), so many machines share one clock.

CREATE TABLE apitask_jobs (
    id bigserial PRIMARY KEY,
    type text NOT NULL,
    payload text NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    locked_by text,
    locked_until timestamptz,
    idempotency_key text,
    last_error text,
    request_id text,
    CONSTRAINT apitask_jobs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'retrying', 'dead'))
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
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES apitask_jobs (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    attempt integer,
    worker text,
    run_at timestamptz,
    detail text
);

-- One job's history, newest first; and the cascade when a job is deleted.
CREATE INDEX apitask_job_events_job ON apitask_job_events (job_id, id);
