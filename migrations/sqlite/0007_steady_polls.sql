-- Steady polls cost the listing, not the history.
--
-- A listing is compared with the latest row of each path only, so that
-- years of `done` versions are never read again: `latest` is 1 on the row
-- with the highest id of its (rule, path), 0 on the versions it replaced,
-- kept true by the triggers below whoever inserts or deletes, e.g.
--   SELECT path, state FROM files WHERE rule = 'orders' AND latest = 1;
ALTER TABLE files ADD COLUMN latest INTEGER NOT NULL DEFAULT 1;
UPDATE files SET latest = 0
WHERE id NOT IN (SELECT max(id) FROM files GROUP BY rule, path);
CREATE INDEX files_latest ON files (rule, path) WHERE latest = 1;

CREATE TRIGGER files_latest_insert AFTER INSERT ON files
BEGIN
    UPDATE files SET latest = 0
    WHERE rule = new.rule AND path = new.path AND latest = 1 AND id < new.id;
    -- Inserted below a later version (by hand): not the latest.
    UPDATE files SET latest = 0
    WHERE id = new.id
      AND EXISTS (SELECT 1 FROM files n WHERE n.rule = new.rule AND n.path = new.path AND n.id > new.id);
END;

-- The latest row deleted (forgotten, dropped, pruned): the version before
-- it, if any, is the latest again.
CREATE TRIGGER files_latest_delete AFTER DELETE ON files WHEN old.latest = 1
BEGIN
    UPDATE files SET latest = 1
    WHERE id = (SELECT max(id) FROM files WHERE rule = old.rule AND path = old.path);
END;

CREATE TRIGGER files_latest_move AFTER UPDATE OF rule, path ON files
WHEN old.rule IS NOT new.rule OR old.path IS NOT new.path
BEGIN
    UPDATE files SET latest = (id = (SELECT max(n.id) FROM files n WHERE n.rule = files.rule AND n.path = files.path))
    WHERE (rule = old.rule AND path = old.path) OR (rule = new.rule AND path = new.path);
END;

-- The due rows of a rule, in id order, without visiting finished ones: the
-- poll takes them a chunk at a time from the last id it got.
CREATE INDEX files_due ON files (rule, id)
WHERE state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered');

-- Files on their way back from failed_move_to, which every poll asks for:
-- found without visiting the rule's other rows.
CREATE INDEX files_restoring ON files (rule, id) WHERE failed_moved_to IS NOT NULL;

-- Finished rows by age, for retention: with recent history only, a prune
-- finds nothing old in one lookup instead of walking every row.
CREATE INDEX files_finished ON files (coalesce(done_at_ms, updated_at_ms))
WHERE state IN ('done', 'skipped');

-- SHA-256 of the last listing recorded for the rule (sorted, deduplicated,
-- with sizes and times). A listing with the same digest changes nothing
-- and is not compared row by row. NULL: compare the next one.
ALTER TABLE rules ADD COLUMN listing_digest BLOB;

-- Anything that could make the same listing change something clears the
-- digest: a row added or deleted other than by the listing itself (the
-- listing writes its digest after its own rows), a finished row made
-- pending again (`ferry retry`, a download started over), a file moved
-- back from failed_move_to, a version, path or unlisted mark changed.
CREATE TRIGGER rules_digest_insert AFTER INSERT ON files
BEGIN
    UPDATE rules SET listing_digest = NULL WHERE name = new.rule AND listing_digest IS NOT NULL;
END;

CREATE TRIGGER rules_digest_delete AFTER DELETE ON files
BEGIN
    UPDATE rules SET listing_digest = NULL WHERE name = old.rule AND listing_digest IS NOT NULL;
END;

CREATE TRIGGER rules_digest_pending AFTER UPDATE OF state ON files
WHEN new.state IN ('seen', 'stable', 'downloading')
 AND old.state NOT IN ('seen', 'stable', 'downloading')
BEGIN
    UPDATE rules SET listing_digest = NULL WHERE name = new.rule AND listing_digest IS NOT NULL;
END;

CREATE TRIGGER rules_digest_row AFTER UPDATE OF rule, path, size, mtime, failed_moved_to, unlisted_since_ms ON files
WHEN old.rule IS NOT new.rule OR old.path IS NOT new.path OR old.size IS NOT new.size
  OR old.mtime IS NOT new.mtime OR old.failed_moved_to IS NOT new.failed_moved_to
  OR old.unlisted_since_ms IS NOT new.unlisted_since_ms
BEGIN
    UPDATE rules SET listing_digest = NULL
    WHERE name IN (old.rule, new.rule) AND listing_digest IS NOT NULL;
END;
