-- The same table as migrations/sqlite/0009_segments.sql.
-- Segmented downloads: a large file is fetched in several byte ranges at
-- once, each over its own session, into one temporary file at their
-- offsets. That file may have holes, so its length says nothing about
-- what arrived: each range's progress is kept here instead, recorded only
-- after the temporary file was fsynced, so it never claims more than is on
-- disk. `size` and `mtime` are the version the ranges were planned for; a
-- row of another version is not resumed. The rows go when the download is
-- complete, or with their file row. E.g.
--   SELECT segment, start_byte, end_byte, done_bytes FROM segments WHERE file_id = 42;
CREATE TABLE segments (
    file_id    BIGINT  NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    size       BIGINT  NOT NULL,
    mtime      BIGINT  NOT NULL,
    segment    BIGINT  NOT NULL,
    -- the range [start_byte, end_byte) of the file
    start_byte BIGINT  NOT NULL,
    end_byte   BIGINT  NOT NULL,
    -- bytes from start_byte that are durable in the temporary file
    done_bytes BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (file_id, segment)
);
