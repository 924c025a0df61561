-- The second round of a book-building allocation: after the first round's payment deadline,
-- the units of unpaid allotments go to the unfilled demand by the same rule, with a seed
-- derived from the first round's. One row per offering; each subscription keeps its
-- round-two demand and allotment, so the round is published and recomputable like round one.
CREATE TABLE allocation_round_two (
    offering_id    TEXT PRIMARY KEY,
    supply         BIGINT NOT NULL,
    lot            BIGINT NOT NULL,
    min_quantity   BIGINT NOT NULL,
    applicants     BIGINT NOT NULL,
    allotted_total BIGINT NOT NULL,
    holds_deadline TIMESTAMPTZ NOT NULL,
    ran_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE subscriptions ADD COLUMN round_two_requested BIGINT;
ALTER TABLE subscriptions ADD COLUMN round_two_allotted BIGINT;
ALTER TABLE subscriptions ADD COLUMN round_two_hold_placed BOOLEAN NOT NULL DEFAULT FALSE;
