-- 0005: indexes for the dashboard's listing pages at a million jobs
-- (docs/dashboard.md, bench/dashboard_plans.py). IF NOT EXISTS: an operator
-- may have built them beforehand (CREATE INDEX CONCURRENTLY on PostgreSQL).

-- Queued and running jobs by state, newest first, and their bounded counts.
-- Partial: a job leaves it when it finishes. Written with OR, not IN, as
-- apitask_jobs_failures is: SQLite uses a partial index for `state = ?` only
-- when that term is one of the OR'ed terms of its WHERE.
CREATE INDEX IF NOT EXISTS apitask_jobs_active ON apitask_jobs (state, id)
    WHERE state = 'queued' OR state = 'running';
-- Jobs of one type, newest first: a rare type among a million jobs would
-- otherwise walk the primary key to its start.
CREATE INDEX IF NOT EXISTS apitask_jobs_type ON apitask_jobs (type, id);
