-- Delivery safety (if_exists, verified delivery, holds, restorable failures).

-- Failed attempts that count against `retry.attempts`. `attempts` counts
-- every attempt started (handlers see it as FERRY_ATTEMPT); a stop, a
-- restart, a wait for a free name or a local storage outage starts
-- attempts without counting failures.
ALTER TABLE files ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
UPDATE files SET failures = max(attempts - 1, 0) WHERE state NOT IN ('done', 'delivered');

-- The inode of the fsynced temporary file. After the rename the final
-- file has the same inode: that is how a repeat recognises its own
-- earlier rename (and tells it from someone else's file of that name).
ALTER TABLE files ADD COLUMN local_inode INTEGER;

-- Why a pending file is held without spending attempts:
-- 'name-taken' (if_exists = "wait") or 'local-storage' (ENOSPC, EDQUOT,
-- EROFS, EIO on the local side). NULL when not held.
ALTER TABLE files ADD COLUMN held TEXT;

-- Where failed_move_to put the file on the server, so that `ferry retry`
-- can bring it back.
ALTER TABLE files ADD COLUMN failed_moved_to TEXT;
