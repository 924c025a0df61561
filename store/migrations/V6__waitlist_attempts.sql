-- A waitlist offer that loses the race for the last units burns its hold id for good
-- (TigerBeetle refuses a failed id forever); the next offer to the same entry takes the
-- next attempt number, which is part of its hold id.
ALTER TABLE waitlist_entries ADD COLUMN offer_attempt INT NOT NULL DEFAULT 0;
