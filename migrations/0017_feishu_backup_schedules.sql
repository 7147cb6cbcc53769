-- Scheduled Feishu docs backups (`feishu backup schedule`): one row per opted-in
-- (app, user, source), and one row per run it made.
--   every_ms: the period; next_run_at: when the next run is due (a run that
--     starts at T makes the next due at T + every, skipping periods it overran).
--   claimed_by / claim_token / claimed_until: the media jobs' claim (0004): one
--     instance runs a schedule at a time, every write of a run is conditioned on
--     its token, and a claim left by a dead instance expires (or is released when
--     that instance starts again).
--   last_status: '' (never ran) | ok | partial (some documents failed) | failed
--     (the backup could not run); failures counts the failed runs in a row.
CREATE TABLE IF NOT EXISTS feishu_backup_schedules (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id VARCHAR(64) NOT NULL,
    open_id VARCHAR(128) NOT NULL,
    source VARCHAR(160) NOT NULL DEFAULT 'all',
    every_ms BIGINT UNSIGNED NOT NULL,
    next_run_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    runs INT UNSIGNED NOT NULL DEFAULT 0,
    last_started_at DATETIME(3) NULL,
    last_finished_at DATETIME(3) NULL,
    last_status VARCHAR(16) NOT NULL DEFAULT '',
    last_summary VARCHAR(1024) NOT NULL DEFAULT '',
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    failures INT UNSIGNED NOT NULL DEFAULT 0,
    claimed_by VARCHAR(255) NOT NULL DEFAULT '',
    claim_token BIGINT UNSIGNED NOT NULL DEFAULT 0,
    claimed_until DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_feishu_backup_schedule (app_id, open_id, source),
    KEY idx_feishu_backup_schedules_due (next_run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Every run a schedule made: who ran it, when, and how it ended (status '' while running).
CREATE TABLE IF NOT EXISTS feishu_backup_runs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    schedule_id BIGINT UNSIGNED NOT NULL,
    instance VARCHAR(255) NOT NULL,
    started_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    finished_at DATETIME(3) NULL,
    status VARCHAR(16) NOT NULL DEFAULT '',
    summary VARCHAR(1024) NOT NULL DEFAULT '',
    error VARCHAR(1024) NOT NULL DEFAULT '',
    KEY idx_feishu_backup_runs_schedule (schedule_id, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
