-- 0005, two parts. First, one job's history (apitask.dashboard's job page): a row per failed
-- attempt, dead letter, lease taken over, and operator retry or cancel, written
-- in the same transaction as the change of the job's row it records. A success
-- writes nothing here: the job's finished_at dates it.
--
-- No foreign key: the store's connection runs with SQLite's foreign keys off,
-- so the statements that delete jobs (retention, purge) delete their events in
-- the same transaction themselves. At most 50 events are kept per job.

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

-- The dashboard's listing pages at a million jobs (docs/dashboard.md,
-- bench/dashboard_plans.py). IF NOT EXISTS: an operator may have built them
-- beforehand (CREATE INDEX CONCURRENTLY on PostgreSQL).

-- Queued and running jobs by state, newest first, and their bounded counts.
-- Partial: a job leaves it when it finishes. Written with OR, not IN, as
-- apitask_jobs_failures is: SQLite uses a partial index for `state = ?` only
-- when that term is one of the OR'ed terms of its WHERE.
CREATE INDEX IF NOT EXISTS apitask_jobs_active ON apitask_jobs (state, id)
    WHERE state = 'queued' OR state = 'running';
-- Jobs of one type, newest first: a rare type among a million jobs would
-- otherwise walk the primary key to its start.
CREATE INDEX IF NOT EXISTS apitask_jobs_type ON apitask_jobs (type, id);
