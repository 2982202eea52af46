-- Send rules; see migrations/sqlite/0004_send.sql for each column.
ALTER TABLE files ADD COLUMN direction TEXT NOT NULL DEFAULT 'listen';
ALTER TABLE files ADD COLUMN sent_to TEXT;
ALTER TABLE files ADD COLUMN append_base BIGINT;
