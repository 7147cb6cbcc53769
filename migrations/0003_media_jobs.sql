-- The durable media queue: one row per media item, nested ones included
-- (item_index 0 = the message's own media, 1.. = items inside mixed/chatrecord).
-- Rows are created in the transaction that stores their message.
--   state: pending | downloading | done | failed | expired | corrupt | paused
--   next_index / bytes_done: the SDK index buffer for the next chunk and the bytes
--   already in the .part file, durable after every chunk so a restart resumes.
CREATE TABLE IF NOT EXISTS media_jobs (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    corpid VARCHAR(64) NOT NULL,
    msgid VARCHAR(191) NOT NULL,
    item_index INT UNSIGNED NOT NULL DEFAULT 0,
    kind VARCHAR(32) NOT NULL,
    sdkfileid TEXT NOT NULL,
    md5sum VARCHAR(64) NOT NULL DEFAULT '',
    size BIGINT UNSIGNED NULL,
    filename VARCHAR(1024) NOT NULL DEFAULT '',
    fileext VARCHAR(64) NOT NULL DEFAULT '',
    emotion_type INT NULL,
    msgtime BIGINT NOT NULL DEFAULT 0,
    state VARCHAR(16) NOT NULL DEFAULT 'pending',
    attempts INT UNSIGNED NOT NULL DEFAULT 0,
    last_code INT NOT NULL DEFAULT 0,
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    next_index VARCHAR(64) NOT NULL DEFAULT '',
    bytes_done BIGINT UNSIGNED NOT NULL DEFAULT 0,
    path VARCHAR(1024) NOT NULL DEFAULT '',
    mp3_path VARCHAR(1024) NOT NULL DEFAULT '',
    next_attempt_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_media_item (corpid, msgid, item_index),
    KEY idx_media_queue (corpid, state, next_attempt_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
