-- Private keys per (corpid, publickey_ver). PKCS#1 or PKCS#8 PEM (armour optional).
CREATE TABLE IF NOT EXISTS corp_keys (
    corpid VARCHAR(64) NOT NULL,
    publickey_ver INT UNSIGNED NOT NULL,
    private_key TEXT NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (corpid, publickey_ver)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per-corp pull state. `seq` is the largest seq whose batch is committed: it is
-- advanced only in the transaction that stores that batch, and never backwards.
-- `fence` is the fencing token of the current writer: a batch commits only while
-- it still holds the token it started with, so a stalled old worker can never
-- move the cursor or insert after a newer one took over.
CREATE TABLE IF NOT EXISTS corp_state (
    corpid VARCHAR(64) NOT NULL PRIMARY KEY,
    seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
    fence BIGINT UNSIGNED NOT NULL DEFAULT 0,
    owner VARCHAR(255) NOT NULL DEFAULT '',
    last_success_at DATETIME(3) NULL,
    last_progress_at DATETIME(3) NULL,
    last_attempt_at DATETIME(3) NULL,
    last_error_code INT NOT NULL DEFAULT 0,
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    alarm VARCHAR(1024) NOT NULL DEFAULT '',
    stored_total BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
