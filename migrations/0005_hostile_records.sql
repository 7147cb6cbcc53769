-- Records a hostile or broken platform can send (issue #9).
--
-- quarantine: envelope items whose batch could not be committed for a reason
-- retrying does not fix (a value no column can hold, a row the server refuses).
-- The batch is bisected down to the failing items; each is kept here verbatim
-- (raw_item: the chatdata item as received, JSON) with the database's error,
-- the corp is alarmed with its msgid, and the cursor moves on. `quarantine
-- retry` replays them once the cause is fixed.
--   msgid_sha256: hex sha256 of the msgid (msgids of any length stay unique).
--   state: held | replayed
--   raw_parts: 0 when raw_item holds the item, else the number of rows in
--   quarantine_parts that hold it (items bigger than max_allowed_packet).
CREATE TABLE IF NOT EXISTS quarantine (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    corpid VARCHAR(64) NOT NULL,
    msgid_sha256 CHAR(64) NOT NULL,
    msgid MEDIUMTEXT NOT NULL,
    seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
    raw_item LONGBLOB NULL,
    raw_parts INT UNSIGNED NOT NULL DEFAULT 0,
    error VARCHAR(2048) NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL DEFAULT 'held',
    attempts INT UNSIGNED NOT NULL DEFAULT 1,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_quarantine_item (corpid, msgid_sha256),
    KEY idx_quarantine_state (corpid, state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS quarantine_parts (
    quarantine_id BIGINT UNSIGNED NOT NULL,
    part INT UNSIGNED NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (quarantine_id, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Plaintexts bigger than the server's max_allowed_packet cannot travel in one
-- row; message_<corpid>.msgdata_parts says how many rows here hold the exact
-- bytes, in order (msgdata is then NULL). Read them with Store::message_bytes.
-- (Not named message_...: that prefix belongs to the per-corp tables.)
CREATE TABLE IF NOT EXISTS large_msgdata (
    corpid VARCHAR(64) NOT NULL,
    msgid_sha256 CHAR(64) NOT NULL,
    part INT UNSIGNED NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (corpid, msgid_sha256, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- msgids up to 512 characters (Tencent's are ~60; a 400-character one must still
-- be archived). utf8mb4 keeps (corpid, msgid, item_index) within InnoDB's
-- 3072-byte key limit.
ALTER TABLE media_jobs MODIFY COLUMN msgid VARCHAR(512) NOT NULL;

-- How a finished media file was checked: md5 (the stated md5 matched) or
-- unverified (no md5 stated: only the stated size, if any, and the declared
-- type's magic bytes were checked). '' for jobs finished before 0005.
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS verification VARCHAR(16) NOT NULL DEFAULT '';
