-- Delivery safety (if_exists, verified delivery, holds, restorable
-- failures); see migrations/sqlite/0002_delivery_safety.sql for each column.

ALTER TABLE files ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN local_inode BIGINT;
ALTER TABLE files ADD COLUMN held TEXT;
ALTER TABLE files ADD COLUMN failed_moved_to TEXT;
