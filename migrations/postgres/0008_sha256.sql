-- Content verification; see migrations/sqlite/0008_sha256.sql.
ALTER TABLE files ADD COLUMN sha256 TEXT;
