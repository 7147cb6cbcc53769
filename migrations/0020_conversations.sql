-- The browser's conversation list, kept per corp instead of grouped from
-- `message_<corpid>` on every request (a scan of the whole table: seconds at a
-- million messages). One row per conversation: kind 'r' a group room (a is its
-- roomid), 'p' a one-to-one pair (a <= b), 'u' the undecrypted records. The key
-- is a hash of the collation weights of the ids, so it is equal exactly when
-- the grouping by those ids merged them (ids can be longer than a key may be).
-- Rows change in the transaction that changes the messages (src/store/conversations.rs).
CREATE TABLE IF NOT EXISTS conversations (
    corpid VARCHAR(64) NOT NULL,
    key_hash BINARY(32) NOT NULL,
    kind CHAR(1) NOT NULL,
    a MEDIUMTEXT NOT NULL,
    b MEDIUMTEXT NOT NULL,
    messages BIGINT UNSIGNED NOT NULL,
    last_msgtime BIGINT NOT NULL,
    PRIMARY KEY (corpid, key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A corp's summary: its row is the lock every writer of the summary takes, and
-- built_at says the summary counts every stored row (NULL: not built yet; the
-- first process that uses the corp builds it from what is stored, so an
-- upgraded archive's list is complete).
CREATE TABLE IF NOT EXISTS conversation_summaries (
    corpid VARCHAR(64) NOT NULL PRIMARY KEY,
    built_at DATETIME(3) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
