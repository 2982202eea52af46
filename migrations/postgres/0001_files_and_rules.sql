-- ferry's state on PostgreSQL: the same tables, columns and meaning as
-- migrations/sqlite/. One row per (rule, remote path, version), a version
-- being the (size, mtime) pair the server reported. Times ferry measured
-- itself are Unix milliseconds (`*_ms`); `mtime` is the server's, in Unix
-- seconds. All integers are BIGINT, as SQLite's are 64-bit. Read it with
-- psql, e.g.
--   SELECT rule, path, state, to_timestamp(updated_at_ms / 1000.0) FROM files;

CREATE TABLE files (
    id              BIGSERIAL PRIMARY KEY,
    rule            TEXT   NOT NULL,
    -- path relative to the rule's remote_dir, '/'-separated
    path            TEXT   NOT NULL,
    size            BIGINT NOT NULL,
    mtime           BIGINT NOT NULL,
    -- seen | stable | downloading | downloaded | delivered | done | failed
    state           TEXT   NOT NULL,
    -- when ferry first saw this path in this pending life (min_age counts from here)
    first_seen_ms   BIGINT NOT NULL,
    -- when ferry first saw this size and mtime (stable_for counts from here)
    stable_since_ms BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    bytes_done      BIGINT NOT NULL DEFAULT 0,
    local_path      TEXT,
    last_error      TEXT,
    delivered_at_ms BIGINT,
    done_at_ms      BIGINT,
    updated_at_ms   BIGINT NOT NULL
);

CREATE INDEX files_by_rule_path ON files (rule, path);
CREATE INDEX files_by_rule_state ON files (rule, state);

-- One row per rule: the health of its polling loop. Recording a listing
-- locks the rule's row (inserted if missing), so two nodes cannot both
-- insert the same new file.
CREATE TABLE rules (
    name               TEXT PRIMARY KEY,
    last_poll_ms       BIGINT,
    last_duration_ms   BIGINT,
    last_listed        BIGINT,
    last_success_ms    BIGINT,
    consecutive_errors BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT
);
