-- ferry's state: one row per (rule, remote path, version), a version being
-- the (size, mtime) pair the server reported. Times ferry measured itself
-- are Unix milliseconds (`*_ms`); `mtime` is the server's, in Unix seconds.
-- Read it with sqlite3, e.g.
--   SELECT rule, path, state, datetime(updated_at_ms / 1000, 'unixepoch') FROM files;

CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    -- path relative to the rule's remote_dir, '/'-separated
    path            TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    mtime           INTEGER NOT NULL,
    -- seen | stable | downloading | downloaded | delivered | done | failed
    state           TEXT    NOT NULL,
    -- when ferry first saw this path in this pending life (min_age counts from here)
    first_seen_ms   INTEGER NOT NULL,
    -- when ferry first saw this size and mtime (stable_for counts from here)
    stable_since_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    bytes_done      INTEGER NOT NULL DEFAULT 0,
    local_path      TEXT,
    last_error      TEXT,
    delivered_at_ms INTEGER,
    done_at_ms      INTEGER,
    updated_at_ms   INTEGER NOT NULL
);

CREATE INDEX files_by_rule_path ON files (rule, path);
CREATE INDEX files_by_rule_state ON files (rule, state);

-- One row per rule: the health of its polling loop.
CREATE TABLE rules (
    name               TEXT PRIMARY KEY,
    last_poll_ms       INTEGER,
    last_duration_ms   INTEGER,
    last_listed        INTEGER,
    last_success_ms    INTEGER,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT
);
