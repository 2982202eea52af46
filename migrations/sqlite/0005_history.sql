-- History: every change of a file row's state, attempt count, failures,
-- hold or version, one row per change, for `ferry explain` and for anyone
-- reading the database with sqlite3, e.g.
--   SELECT datetime(at_ms / 1000, 'unixepoch'), event, from_state, to_state, attempt, error
--   FROM history WHERE file_id = 42 ORDER BY id;
--
-- Written by triggers, so a history row is part of the very statement that
-- changes the file row: the two commit together or not at all, and no code
-- path (a group commit, a listing, `ferry retry`, sqlite3 by hand) can
-- change a state without leaving its line here.

CREATE TABLE history (
    id              INTEGER PRIMARY KEY,
    file_id         INTEGER NOT NULL,
    -- the row's updated_at_ms: ferry's clock when it recorded the change
    at_ms           INTEGER NOT NULL,
    -- listed (a new row), refused (a new row that failed at once: a name
    -- that is not UTF-8), changed (a pending row got a new version),
    -- attempt (an attempt started), retry (an attempt failed, another one
    -- follows at next_attempt_ms), held, failed, requeued (`ferry retry`),
    -- or the new state's name for any other change (stable, downloaded, ...)
    event           TEXT    NOT NULL,
    from_state      TEXT,
    to_state        TEXT    NOT NULL,
    -- attempts started so far (FERRY_ATTEMPT of the latest one)
    attempt         INTEGER NOT NULL,
    failures        INTEGER NOT NULL,
    -- the row's last_error, when this change set or kept one
    error           TEXT,
    -- bytes on disk (or on the server, for a send), when they changed
    bytes           INTEGER,
    next_attempt_ms INTEGER,
    held            TEXT
);

CREATE INDEX history_by_file ON history (file_id, id);

CREATE TRIGGER history_insert AFTER INSERT ON files
BEGIN
    INSERT INTO history (file_id, at_ms, event, from_state, to_state, attempt, failures, error)
    VALUES (new.id, new.updated_at_ms, CASE WHEN new.state = 'failed' THEN 'refused' ELSE 'listed' END,
            NULL, new.state, new.attempts, new.failures, new.last_error);
END;

-- `OF ...`: updates that touch none of these columns (a final name chosen
-- again, the unlisted mark below) cost no trigger at all.
CREATE TRIGGER history_update AFTER UPDATE OF state, attempts, failures, held, size, mtime ON files
WHEN old.state IS NOT new.state OR old.attempts IS NOT new.attempts OR old.failures IS NOT new.failures
  OR old.held IS NOT new.held OR old.size IS NOT new.size OR old.mtime IS NOT new.mtime
BEGIN
    INSERT INTO history (file_id, at_ms, event, from_state, to_state, attempt, failures, error, bytes,
                         next_attempt_ms, held)
    VALUES (new.id, new.updated_at_ms,
            CASE WHEN old.size IS NOT new.size OR old.mtime IS NOT new.mtime THEN 'changed'
                 WHEN new.state = 'failed' AND old.state IS NOT 'failed' THEN 'failed'
                 WHEN old.state = 'failed' AND new.state IS NOT 'failed' THEN 'requeued'
                 WHEN new.held IS NOT NULL AND old.held IS NOT new.held THEN 'held'
                 WHEN new.failures > old.failures THEN 'retry'
                 WHEN new.attempts > old.attempts THEN 'attempt'
                 ELSE new.state END,
            old.state, new.state, new.attempts, new.failures,
            CASE WHEN new.last_error IS NOT old.last_error OR new.failures > old.failures
                      OR new.state = 'failed' OR new.held IS NOT NULL THEN new.last_error END,
            CASE WHEN new.bytes_done IS NOT old.bytes_done OR new.state = 'downloaded' THEN new.bytes_done END,
            new.next_attempt_ms, new.held);
END;

-- A row that goes (forgotten, dropped, pruned by retention) takes its
-- history with it: row ids can be used again, and a new row must not
-- inherit an old one's past.
CREATE TRIGGER history_delete AFTER DELETE ON files
BEGIN
    DELETE FROM history WHERE file_id = old.id;
END;

-- Retention (`daemon.retention`) never prunes the latest row of a path a
-- listing still shows: with `keep`, that row is what stops the file being
-- delivered again. This is when the rule's listings stopped showing the
-- path of this (latest, finished) row; NULL while they show it.
ALTER TABLE files ADD COLUMN unlisted_since_ms INTEGER;
