-- Feishu meeting recordings (issue 13): one durable job per (app, meeting).
-- The unique key makes a second delivery, a redelivery or a second instance
-- receiving the same event change nothing.
--   state: pending | waiting (recording not ready: 124002 / 2091003) | awaiting_auth
--          | downloading | done | no_recording | failed
--   bytes: the recording's size (Content-Length of the full file), once known;
--   bytes_done: bytes of the `.part` file fsynced so far (Range resume after a restart).
--   claimed_by / claim_token / claimed_until: the media jobs' claim (0004): one instance
--   works a job at a time, and every write is conditioned on its token.
--   auth_session: the card authorization session sent for this job's owner.
--   notified: the owner was told how the job ended (done / no_recording / failed).
CREATE TABLE IF NOT EXISTS feishu_recordings (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id VARCHAR(64) NOT NULL,
    meeting_id VARCHAR(64) NOT NULL,
    topic VARCHAR(512) NOT NULL DEFAULT '',
    owner_open_id VARCHAR(128) NOT NULL,
    start_time BIGINT NOT NULL DEFAULT 0,
    end_time BIGINT NOT NULL DEFAULT 0,
    event_id VARCHAR(128) NOT NULL DEFAULT '',
    minute_token VARCHAR(64) NOT NULL DEFAULT '',
    duration_ms BIGINT NOT NULL DEFAULT 0,
    path VARCHAR(1024) NOT NULL DEFAULT '',
    bytes BIGINT UNSIGNED NULL,
    bytes_done BIGINT UNSIGNED NOT NULL DEFAULT 0,
    sha256 CHAR(64) NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL DEFAULT 'pending',
    attempts INT UNSIGNED NOT NULL DEFAULT 0,
    polls INT UNSIGNED NOT NULL DEFAULT 0,
    last_code BIGINT NOT NULL DEFAULT 0,
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    auth_session VARCHAR(64) NOT NULL DEFAULT '',
    notified TINYINT(1) NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    claimed_by VARCHAR(255) NOT NULL DEFAULT '',
    claim_token BIGINT UNSIGNED NOT NULL DEFAULT 0,
    claimed_until DATETIME(3) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    download_started_at DATETIME(3) NULL,
    finished_at DATETIME(3) NULL,
    UNIQUE KEY uk_feishu_recording (app_id, meeting_id),
    KEY idx_feishu_recordings_queue (state, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
