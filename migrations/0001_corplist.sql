-- Corps to archive. Keeps the seed tool's columns and their meaning
-- (id, corpid, secret, corpname, prikey, limits, timeout, status, update) so admins
-- can keep adding corps with plain SQL, and upgrades a seed table in place.
--   status: 1 = enabled, 0 = disabled
--   update: set to 1 by hand after editing a row; the service reloads the corp and resets it to 0
--   prikey: fallback private key for key versions that have no row in corp_keys
CREATE TABLE IF NOT EXISTS corplist (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    corpid VARCHAR(64) NOT NULL,
    secret VARCHAR(2048) NOT NULL DEFAULT '',
    corpname VARCHAR(255) NOT NULL DEFAULT '',
    prikey TEXT NULL,
    limits INT NOT NULL DEFAULT 1000,
    timeout INT NOT NULL DEFAULT 10,
    status TINYINT NOT NULL DEFAULT 1,
    `update` TINYINT NOT NULL DEFAULT 0,
    UNIQUE KEY uk_corplist_corpid (corpid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

ALTER TABLE corplist ADD COLUMN IF NOT EXISTS proxy VARCHAR(512) NOT NULL DEFAULT '';
ALTER TABLE corplist ADD COLUMN IF NOT EXISTS passwd VARCHAR(1024) NOT NULL DEFAULT '';
ALTER TABLE corplist ADD COLUMN IF NOT EXISTS created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3);
ALTER TABLE corplist ADD COLUMN IF NOT EXISTS updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3);
