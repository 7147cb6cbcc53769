-- Accounts of the archive browser (/ui/), their sessions, and the access log.
--   ui_users.role: admin (everything) | auditor (read and export the corps in ui_user_corps)
--   ui_users.password_hash: argon2id PHC string; never the password
CREATE TABLE IF NOT EXISTS ui_users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(191) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY uk_ui_users_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Which corps an auditor may read and export.
CREATE TABLE IF NOT EXISTS ui_user_corps (
    user_id BIGINT UNSIGNED NOT NULL,
    corpid VARCHAR(64) NOT NULL,
    PRIMARY KEY (user_id, corpid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Browser sessions: the cookie carries a random token, only its sha256 is stored,
-- with the CSRF token every state-changing request must echo.
CREATE TABLE IF NOT EXISTS ui_sessions (
    token_hash CHAR(64) NOT NULL PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    csrf CHAR(64) NOT NULL,
    remote VARCHAR(64) NOT NULL DEFAULT '',
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    expires_at DATETIME(3) NOT NULL,
    KEY idx_ui_sessions_user (user_id),
    KEY idx_ui_sessions_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Who read or exported what, when, from where (visible to admins at /ui/admin/access).
--   action: login | login_failed | logout | view_conversation | search | export | media
CREATE TABLE IF NOT EXISTS access_log (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    user_name VARCHAR(191) NOT NULL,
    action VARCHAR(32) NOT NULL,
    corpid VARCHAR(64) NOT NULL DEFAULT '',
    target VARCHAR(1024) NOT NULL DEFAULT '',
    remote VARCHAR(64) NOT NULL DEFAULT '',
    KEY idx_access_at (at),
    KEY idx_access_user (user_name, at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
