-- Message tables taken over from the Java tool (wework-msgaudit), one row per
-- corp: when, how many rows it held, the largest seq it had stored (the cursor
-- starts after it) and the largest id of its rows (rows with id <= seed_max_id
-- are the Java tool's, with its meaning of msgdata; see docs/OPERATIONS.md §8).
CREATE TABLE IF NOT EXISTS seed_adoptions (
    corpid VARCHAR(64) NOT NULL PRIMARY KEY,
    adopted_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    seed_rows BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seed_max_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
    seed_max_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
    tolist_converted BIGINT UNSIGNED NOT NULL DEFAULT 0,
    changes TEXT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
