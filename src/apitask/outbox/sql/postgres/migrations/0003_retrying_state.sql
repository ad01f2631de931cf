-- 0003: the state "failed" is renamed "retrying" (an attempt failed and a retry
-- is scheduled; final failure is "dead"). The constraint goes first so that
-- the rows can be rewritten; adding it back checks every row (the migration
-- holds the table's lock throughout, in one transaction).

ALTER TABLE apitask_jobs DROP CONSTRAINT apitask_jobs_state_check;
UPDATE apitask_jobs SET state = 'retrying' WHERE state = 'failed';
ALTER TABLE apitask_jobs ADD CONSTRAINT apitask_jobs_state_check
    CHECK (state IN ('queued', 'running', 'succeeded', 'retrying', 'dead'));

-- The claim index names the state in its WHERE: made again with the new name.
DROP INDEX apitask_jobs_ready;
CREATE INDEX apitask_jobs_ready ON apitask_jobs (run_at, id) WHERE state IN ('queued', 'retrying');
