-- Feishu (Lark) apps, one row per tenant app. Secrets are sealed under the
-- master key (wwenc:v1:…) like corp secrets; plaintext rows still work.
CREATE TABLE IF NOT EXISTS feishu_apps (
    app_id VARCHAR(64) NOT NULL PRIMARY KEY,
    app_secret TEXT NOT NULL,
    encrypt_key TEXT NOT NULL,
    verification_token TEXT NOT NULL,
    base_url VARCHAR(512) NOT NULL,
    enabled TINYINT(1) NOT NULL DEFAULT 1,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Keys of the token hand-out (GET /feishu/app-token). Only the SHA-256 of a
-- key is stored: the key itself is printed once by `feishu token-key add`.
CREATE TABLE IF NOT EXISTS feishu_token_keys (
    name VARCHAR(128) NOT NULL PRIMARY KEY,
    key_hash CHAR(64) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at DATETIME(3) NULL,
    UNIQUE KEY feishu_token_keys_hash (key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- One row per token hand-out (never the token itself).
CREATE TABLE IF NOT EXISTS feishu_token_audit (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    key_name VARCHAR(128) NOT NULL,
    app_id VARCHAR(64) NOT NULL,
    peer VARCHAR(128) NOT NULL,
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY feishu_token_audit_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Authorized users. Tokens are sealed; `version` is the compare-and-swap
-- counter that makes a rotated refresh token impossible to lose: a refresh is
-- saved only if nobody saved another pair since it was read.
CREATE TABLE IF NOT EXISTS feishu_users (
    app_id VARCHAR(64) NOT NULL,
    open_id VARCHAR(128) NOT NULL,
    name VARCHAR(255) NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL DEFAULT 'active',
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    access_lifetime_s INT UNSIGNED NOT NULL,
    refresh_expires_at BIGINT NULL,
    scope TEXT NOT NULL,
    version BIGINT UNSIGNED NOT NULL DEFAULT 1,
    last_error VARCHAR(512) NOT NULL DEFAULT '',
    authorized_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (app_id, open_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- OAuth `state` values (CSRF): random, single use, short-lived (expires_at in unix ms).
CREATE TABLE IF NOT EXISTS feishu_oauth_states (
    state VARCHAR(64) NOT NULL PRIMARY KEY,
    app_id VARCHAR(64) NOT NULL,
    open_id VARCHAR(128) NULL,
    session_id VARCHAR(64) NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at BIGINT NOT NULL,
    used_at DATETIME(3) NULL,
    KEY feishu_oauth_states_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Card authorization sessions: pending -> completed | rejected | expired.
CREATE TABLE IF NOT EXISTS feishu_auth_sessions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    app_id VARCHAR(64) NOT NULL,
    open_id VARCHAR(128) NOT NULL,
    state VARCHAR(16) NOT NULL DEFAULT 'pending',
    message_id VARCHAR(128) NOT NULL DEFAULT '',
    reason VARCHAR(255) NOT NULL DEFAULT '',
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at BIGINT NOT NULL,
    finished_at DATETIME(3) NULL,
    KEY feishu_auth_sessions_state (state, expires_at),
    KEY feishu_auth_sessions_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Events received on the webhook, stored before the 200. The primary key is
-- the cross-instance de-duplication of last resort (Redis is the fast path).
CREATE TABLE IF NOT EXISTS feishu_events (
    app_id VARCHAR(64) NOT NULL,
    event_id VARCHAR(128) NOT NULL,
    event_type VARCHAR(128) NOT NULL,
    payload MEDIUMTEXT NOT NULL,
    received_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    processed_at DATETIME(3) NULL,
    process_error VARCHAR(512) NOT NULL DEFAULT '',
    PRIMARY KEY (app_id, event_id),
    KEY feishu_events_pending (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
