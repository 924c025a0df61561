-- An allocation run fixes one payment deadline for all its allotments, so a rerun the next
-- day gives no later deadline; an allotment whose deadline passed before its hold stood (or
-- whose hold had lapsed when a rerun found it) is lapsed, not placed.
ALTER TABLE allocation_runs ADD COLUMN holds_deadline TIMESTAMPTZ;
ALTER TABLE subscriptions ADD COLUMN hold_lapsed BOOLEAN NOT NULL DEFAULT FALSE;
