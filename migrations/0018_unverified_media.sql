-- Media files the platform stated no md5 for get a job state of their own,
-- `unverified`, instead of `done` with a side column: an auditor reading
-- media_jobs (or `status`, /metrics, the browser) can tell a file checked
-- against Tencent's md5 from one checked only by size and magic bytes.
-- Jobs finished before this migration carry the distinction in `verification`.
UPDATE media_jobs SET state = 'unverified' WHERE state = 'done' AND verification = 'unverified';
