-- 0004: indexes for an operator's searches (apitask.dashboard), which would
-- otherwise read the whole table at a million rows. IF NOT EXISTS: an operator
-- may have built them beforehand (CREATE INDEX CONCURRENTLY on PostgreSQL, where
-- this migration's transaction would hold off writes while it builds them).

-- Jobs of one request, newest first. Partial: jobs enqueued outside a request
-- cost no entry.
CREATE INDEX IF NOT EXISTS apitask_jobs_request_id ON apitask_jobs (request_id, id)
    WHERE request_id IS NOT NULL;
-- Jobs that failed (retrying or dead), by state, newest first: dead letters
-- are rare among a million succeeded jobs, and the primary key would be
-- walked to its start to find them. Partial: a job enters it only when an
-- attempt fails, never on enqueue, claim or success. Written with OR, not IN:
-- SQLite uses a partial index only when a term of the query (state = ?)
-- is one of the OR'ed terms of its WHERE.
CREATE INDEX IF NOT EXISTS apitask_jobs_failures ON apitask_jobs (state, id)
    WHERE state = 'retrying' OR state = 'dead';
