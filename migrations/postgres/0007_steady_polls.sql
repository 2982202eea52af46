-- Steady polls cost the listing, not the history: the same columns,
-- indexes and meaning as migrations/sqlite/0007_steady_polls.sql.
--
-- A listing is compared with the latest row of each path only, so that
-- years of `done` versions are never read again: `latest` is true on the
-- row with the highest id of its (rule, path), false on the versions it
-- replaced, kept true by the triggers below whoever inserts or deletes, e.g.
--   SELECT path, state FROM files WHERE rule = 'orders' AND latest;
ALTER TABLE files ADD COLUMN latest BOOLEAN NOT NULL DEFAULT true;
UPDATE files f SET latest = false
WHERE EXISTS (SELECT 1 FROM files n WHERE n.rule = f.rule AND n.path = f.path AND n.id > f.id);
CREATE INDEX files_latest ON files (rule, path) WHERE latest;

-- Per statement, over the rows it inserted: a first listing of 100,000
-- files runs this once, not 100,000 times. Any row of those paths below
-- the highest id loses the mark: the versions replaced, and a row
-- inserted below a later version (by hand).
CREATE FUNCTION ferry_latest_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE files f SET latest = false
    FROM (SELECT DISTINCT rule, path FROM inserted) k
    WHERE f.rule = k.rule AND f.path = k.path AND f.latest
      AND f.id < (SELECT max(n.id) FROM files n WHERE n.rule = k.rule AND n.path = k.path);
    RETURN NULL;
END
$$;

CREATE TRIGGER files_latest_insert AFTER INSERT ON files
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION ferry_latest_insert();

-- The latest row deleted (forgotten, dropped, pruned): the version before
-- it, if any, is the latest again.
CREATE FUNCTION ferry_latest_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE files f SET latest = true
    FROM (SELECT n.rule, n.path, max(n.id) AS id
          FROM files n JOIN (SELECT DISTINCT rule, path FROM deleted WHERE latest) k
            ON n.rule = k.rule AND n.path = k.path
          GROUP BY n.rule, n.path) m
    WHERE f.id = m.id AND NOT f.latest;
    RETURN NULL;
END
$$;

CREATE TRIGGER files_latest_delete AFTER DELETE ON files
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION ferry_latest_delete();

-- Per row: PostgreSQL allows no transition tables on a trigger with a
-- column list, and a row changing its rule or path is rare (by hand).
CREATE FUNCTION ferry_latest_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE files f
    SET latest = (f.id = (SELECT max(n.id) FROM files n WHERE n.rule = f.rule AND n.path = f.path))
    WHERE (f.rule = OLD.rule AND f.path = OLD.path) OR (f.rule = NEW.rule AND f.path = NEW.path);
    RETURN NULL;
END
$$;

CREATE TRIGGER files_latest_move AFTER UPDATE OF rule, path ON files
FOR EACH ROW
WHEN (OLD.rule IS DISTINCT FROM NEW.rule OR OLD.path IS DISTINCT FROM NEW.path)
EXECUTE FUNCTION ferry_latest_move();

-- The due rows of a rule, in id order, without visiting finished ones: the
-- poll takes them a chunk at a time from the last id it got.
CREATE INDEX files_due ON files (rule, id)
WHERE state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered');

-- Files on their way back from failed_move_to, which every poll asks for:
-- found without visiting the rule's other rows.
CREATE INDEX files_restoring ON files (rule, id) WHERE failed_moved_to IS NOT NULL;

-- Finished rows by age, for retention: with recent history only, a prune
-- finds nothing old in one lookup instead of walking every row.
CREATE INDEX files_finished ON files ((coalesce(done_at_ms, updated_at_ms)))
WHERE state IN ('done', 'skipped');

-- SHA-256 of the last listing recorded for the rule (sorted, deduplicated,
-- with sizes and times). A listing with the same digest changes nothing
-- and is not compared row by row. NULL: compare the next one.
ALTER TABLE rules ADD COLUMN listing_digest BYTEA;

-- Anything that could make the same listing change something clears the
-- digest: a row added or deleted other than by the listing itself (the
-- listing writes its digest after its own rows), a finished row made
-- pending again (`ferry retry`, a download started over), a file moved
-- back from failed_move_to, a version, path or unlisted mark changed.
CREATE FUNCTION ferry_digest_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rules SET listing_digest = NULL
    WHERE name IN (SELECT DISTINCT rule FROM inserted) AND listing_digest IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER rules_digest_insert AFTER INSERT ON files
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION ferry_digest_inserted();

CREATE FUNCTION ferry_digest_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rules SET listing_digest = NULL
    WHERE name IN (SELECT DISTINCT rule FROM deleted) AND listing_digest IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER rules_digest_delete AFTER DELETE ON files
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION ferry_digest_deleted();

-- Per row, with a column list and a WHEN: an update that touches none of
-- these columns, or changes nothing they mean, costs no trigger call.
CREATE FUNCTION ferry_digest_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rules SET listing_digest = NULL
    WHERE name IN (OLD.rule, NEW.rule) AND listing_digest IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER rules_digest_pending AFTER UPDATE OF state ON files
FOR EACH ROW
WHEN (NEW.state IN ('seen', 'stable', 'downloading')
      AND OLD.state NOT IN ('seen', 'stable', 'downloading'))
EXECUTE FUNCTION ferry_digest_row();

CREATE TRIGGER rules_digest_row
AFTER UPDATE OF rule, path, size, mtime, failed_moved_to, unlisted_since_ms ON files
FOR EACH ROW
WHEN (OLD.rule IS DISTINCT FROM NEW.rule OR OLD.path IS DISTINCT FROM NEW.path
      OR OLD.size IS DISTINCT FROM NEW.size OR OLD.mtime IS DISTINCT FROM NEW.mtime
      OR OLD.failed_moved_to IS DISTINCT FROM NEW.failed_moved_to
      OR OLD.unlisted_since_ms IS DISTINCT FROM NEW.unlisted_since_ms)
EXECUTE FUNCTION ferry_digest_row();
