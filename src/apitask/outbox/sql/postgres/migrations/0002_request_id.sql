-- 0002: the id of the request that enqueued each job, so that the task's log
-- lines name that request when a worker runs it (NULL outside a request).

ALTER TABLE apitask_jobs ADD COLUMN request_id text;
