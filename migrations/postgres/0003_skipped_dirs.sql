-- Directories a recursive poll could not list, shown by `ferry status`.
ALTER TABLE rules ADD COLUMN skipped_dirs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN skipped_error TEXT;
