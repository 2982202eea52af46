-- Content verification: the SHA-256 of the bytes a transfer moved, as
-- lowercase hex, computed while they streamed and recorded with the
-- `downloaded` step (for a send: the bytes uploaded), e.g.
--   SELECT path, sha256 FROM files WHERE rule = 'orders' AND state = 'done';
-- NULL for rows moved before this column existed.
ALTER TABLE files ADD COLUMN sha256 TEXT;
