-- Tamper evidence: a per-corp hash chain over the stored message records.
-- One link per stored record (kind 'insert', in the order the batch commit stored
-- them, i.e. seq order) and one more each time `redecrypt` completes or changes an
-- undecrypted record (kind 'redecrypt'): the chain is only ever appended to.
--   record_hash: sha256 of the record's stored fields (src/archive/chain.rs, docs/TAMPER-EVIDENCE.md)
--   link_hash:   sha256 over the previous link_hash, pos, kind, msgid, seq and record_hash
-- Links are written in the same transaction as the rows they cover.
CREATE TABLE IF NOT EXISTS chain_links (
    corpid VARCHAR(64) NOT NULL,
    pos BIGINT UNSIGNED NOT NULL,
    kind VARCHAR(16) NOT NULL,
    msgid VARCHAR(512) NOT NULL,  -- as wide as message tables' msgid (a 400-character msgid is archived)
    seq BIGINT UNSIGNED NOT NULL,
    record_hash CHAR(64) NOT NULL,
    link_hash CHAR(64) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (corpid, pos),
    KEY idx_chain_msgid (corpid, msgid),
    KEY idx_chain_seq (corpid, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The chain head per corp (its last link), locked by the transaction that extends it.
CREATE TABLE IF NOT EXISTS chain_heads (
    corpid VARCHAR(64) NOT NULL PRIMARY KEY,
    pos BIGINT UNSIGNED NOT NULL DEFAULT 0,
    head CHAR(64) NOT NULL,
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
