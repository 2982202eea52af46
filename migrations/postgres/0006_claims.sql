-- Claims with leases: several ferry hosts (nodes) on this database each
-- take a file by writing themselves into its row, for a limited time that
-- they keep renewing (ARCHITECTURE.md, "Several hosts").

-- The node (`daemon.node`) that last claimed the row, and which process
-- of it (a random token per start). Kept after the work ends: a process
-- that was paused and wakes finds another instance here and stops, even
-- when the row is finished.
ALTER TABLE files ADD COLUMN owner TEXT;
ALTER TABLE files ADD COLUMN owner_instance TEXT;
-- Until when the claim holds (Unix ms); NULL when nobody works on the row.
-- Past it, any node may claim the row and resume it from its state.
ALTER TABLE files ADD COLUMN lease_until_ms BIGINT;

-- The renewal touches only rows under a live lease.
CREATE INDEX files_leased ON files (owner_instance) WHERE lease_until_ms IS NOT NULL;

-- Which node lists the rule, and until when: one node lists a rule, the
-- others only claim its due files.
ALTER TABLE rules ADD COLUMN lister TEXT;
ALTER TABLE rules ADD COLUMN lister_instance TEXT;
ALTER TABLE rules ADD COLUMN list_lease_until_ms BIGINT;

-- One row per node: who it is, which process of it runs, and when it
-- last renewed its leases. `ferry status` shows them.
CREATE TABLE nodes (
    name         TEXT   PRIMARY KEY,
    instance     TEXT   NOT NULL,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
