-- The proxy is sealed like the secret (a rewritten proxy plus the SDK's missing
-- TLS checks would hand the secret to whoever runs that proxy), and a sealed
-- value is longer than the URL: room for a 1 KB URL once sealed. MODIFY to the
-- same definition is a no-op, so running this again changes nothing.
ALTER TABLE corplist MODIFY COLUMN proxy VARCHAR(2048) NOT NULL DEFAULT '';
ALTER TABLE corplist MODIFY COLUMN passwd VARCHAR(2048) NOT NULL DEFAULT '';

-- A corplist the Java tool created has `secret VARCHAR(43)`, `prikey
-- VARCHAR(2048)` and `corpid VARCHAR(18)`, in utf8: a sealed secret is longer
-- than 43 characters, and keys of several versions do not fit. Widen them to
-- this service's definitions (no-ops on a table 0001 created).
ALTER TABLE corplist MODIFY COLUMN corpid VARCHAR(64) NOT NULL;
ALTER TABLE corplist MODIFY COLUMN secret VARCHAR(2048) NOT NULL DEFAULT '';
ALTER TABLE corplist MODIFY COLUMN prikey TEXT NULL;
ALTER TABLE corplist CONVERT TO CHARACTER SET utf8mb4;
