-- Send rules: rows of files going out from a local outbox to a server.
-- For them `path` is relative to the outbox and (size, mtime) is the
-- local file's version.

-- 'listen' (from a server into local_dir or a handler) or 'send'.
ALTER TABLE files ADD COLUMN direction TEXT NOT NULL DEFAULT 'listen';

-- Send: the remote path the file was (or is being) renamed to, chosen
-- by if_exists and recorded before the rename, like local_path is for
-- a delivery.
ALTER TABLE files ADD COLUMN sent_to TEXT;

-- Send with if_exists = "append": the size of the remote file before the
-- first byte was appended, recorded before that byte. Bytes appended so
-- far are the remote size minus this, so a repeat continues, never
-- appends twice.
ALTER TABLE files ADD COLUMN append_base INTEGER;
