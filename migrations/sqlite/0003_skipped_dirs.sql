-- Directories a recursive poll could not list (permission denied, a
-- symlink loop): skipped so the rest of the rule is delivered, and shown
-- by `ferry status`. Set by every poll that listed: 0 and NULL when none.
ALTER TABLE rules ADD COLUMN skipped_dirs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN skipped_error TEXT;
