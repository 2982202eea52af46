-- History: every change of a file row's state, attempt count, failures,
-- hold or version, one row per change (columns and events as in
-- migrations/sqlite/0005_history.sql). Written by triggers, so a history
-- row is part of the very statement that changes the file row: the two
-- commit together or not at all, whichever node or tool made the change.

CREATE TABLE history (
    id              BIGSERIAL PRIMARY KEY,
    file_id         BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    event           TEXT   NOT NULL,
    from_state      TEXT,
    to_state        TEXT   NOT NULL,
    attempt         BIGINT NOT NULL,
    failures        BIGINT NOT NULL,
    error           TEXT,
    bytes           BIGINT,
    next_attempt_ms BIGINT,
    held            TEXT
);

CREATE INDEX history_by_file ON history (file_id, id);

CREATE FUNCTION ferry_history_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO history (file_id, at_ms, event, from_state, to_state, attempt, failures, error)
    VALUES (NEW.id, NEW.updated_at_ms, CASE WHEN NEW.state = 'failed' THEN 'refused' ELSE 'listed' END,
            NULL, NEW.state, NEW.attempts, NEW.failures, NEW.last_error);
    RETURN NULL;
END
$$;

CREATE TRIGGER history_insert AFTER INSERT ON files
FOR EACH ROW EXECUTE FUNCTION ferry_history_insert();

CREATE FUNCTION ferry_history_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO history (file_id, at_ms, event, from_state, to_state, attempt, failures, error, bytes,
                         next_attempt_ms, held)
    VALUES (NEW.id, NEW.updated_at_ms,
            CASE WHEN OLD.size IS DISTINCT FROM NEW.size OR OLD.mtime IS DISTINCT FROM NEW.mtime THEN 'changed'
                 WHEN NEW.state = 'failed' AND OLD.state IS DISTINCT FROM 'failed' THEN 'failed'
                 WHEN OLD.state = 'failed' AND NEW.state IS DISTINCT FROM 'failed' THEN 'requeued'
                 WHEN NEW.held IS NOT NULL AND OLD.held IS DISTINCT FROM NEW.held THEN 'held'
                 WHEN NEW.failures > OLD.failures THEN 'retry'
                 WHEN NEW.attempts > OLD.attempts THEN 'attempt'
                 ELSE NEW.state END,
            OLD.state, NEW.state, NEW.attempts, NEW.failures,
            CASE WHEN NEW.last_error IS DISTINCT FROM OLD.last_error OR NEW.failures > OLD.failures
                      OR NEW.state = 'failed' OR NEW.held IS NOT NULL THEN NEW.last_error END,
            CASE WHEN NEW.bytes_done IS DISTINCT FROM OLD.bytes_done OR NEW.state = 'downloaded'
                 THEN NEW.bytes_done END,
            NEW.next_attempt_ms, NEW.held);
    RETURN NULL;
END
$$;

-- `OF ...`: updates that touch none of these columns (a final name chosen
-- again, the unlisted mark below) cost no trigger at all.
CREATE TRIGGER history_update AFTER UPDATE OF state, attempts, failures, held, size, mtime ON files
FOR EACH ROW
WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.attempts IS DISTINCT FROM NEW.attempts
      OR OLD.failures IS DISTINCT FROM NEW.failures OR OLD.held IS DISTINCT FROM NEW.held
      OR OLD.size IS DISTINCT FROM NEW.size OR OLD.mtime IS DISTINCT FROM NEW.mtime)
EXECUTE FUNCTION ferry_history_update();

-- A row that goes (forgotten, dropped, pruned by retention) takes its
-- history with it.
CREATE FUNCTION ferry_history_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM history WHERE file_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER history_delete AFTER DELETE ON files
FOR EACH ROW EXECUTE FUNCTION ferry_history_delete();

-- When the rule's listings stopped showing the path of this (latest,
-- finished) row; NULL while they show it. Retention keeps the row until then.
ALTER TABLE files ADD COLUMN unlisted_since_ms BIGINT;
