-- Feishu cloud documents and wiki backup (`feishu backup`): one row per
-- document a user's backup has seen, keyed by the document token (a wiki node
-- is stored under its real obj_token, so a document reached twice is one row).
-- `modified_time` is Feishu's (unix seconds as listed); a document is skipped
-- while it and the stored file are unchanged. `export_ticket` survives a kill,
-- so a restarted run polls the export it already asked for instead of asking
-- again. `permanent` failures (export denied, size limit, …) are not retried
-- until the document changes (or `--full`).
CREATE TABLE IF NOT EXISTS feishu_docs (
    app_id VARCHAR(64) NOT NULL,
    open_id VARCHAR(128) NOT NULL,
    token VARCHAR(128) NOT NULL,
    doc_type VARCHAR(32) NOT NULL,
    title VARCHAR(1024) NOT NULL DEFAULT '',
    path VARCHAR(3072) NOT NULL DEFAULT '',
    modified_time BIGINT NOT NULL DEFAULT 0,
    size BIGINT NULL,
    sha256 CHAR(64) NULL,
    status VARCHAR(16) NOT NULL,
    reason VARCHAR(1024) NOT NULL DEFAULT '',
    permanent TINYINT(1) NOT NULL DEFAULT 0,
    export_ext VARCHAR(8) NOT NULL DEFAULT '',
    export_ticket VARCHAR(64) NULL,
    export_ticket_at BIGINT NULL,
    last_backup_at BIGINT NULL,
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app_id, open_id, token)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
