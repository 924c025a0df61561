-- Fairness: committed seeds, book-building subscriptions and their allocation, the waiting
-- room's entries and counters, and used proof-of-work challenges.

-- One secret seed per offering and draw; its SHA-256 is public from creation, the seed
-- itself once revealed_at is set.
CREATE TABLE fairness_seeds (
    offering_id    TEXT NOT NULL REFERENCES offerings(id),
    purpose        TEXT NOT NULL CHECK (purpose IN ('allocation', 'queue')),
    seed           BYTEA NOT NULL CHECK (length(seed) = 32),
    commitment     BYTEA NOT NULL,              -- SHA-256(seed)
    committed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revealed_at    TIMESTAMPTZ,
    PRIMARY KEY (offering_id, purpose)
);

CREATE TABLE subscriptions (
    offering_id    TEXT NOT NULL REFERENCES offerings(id),
    user_id        BIGINT NOT NULL,
    pseudonym      TEXT NOT NULL,               -- how the person appears in the export
    requested      BIGINT NOT NULL CHECK (requested > 0),
    allotted       BIGINT,                      -- set by the allocation run
    hold_placed    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (offering_id, user_id),
    UNIQUE (offering_id, pseudonym)
);

-- One row per allocated offering: the published figures of its run.
CREATE TABLE allocation_runs (
    offering_id      TEXT PRIMARY KEY REFERENCES offerings(id),
    supply           BIGINT NOT NULL,
    lot              BIGINT NOT NULL,
    min_quantity     BIGINT NOT NULL,
    applicants       BIGINT NOT NULL,
    requested_total  BIGINT NOT NULL,
    allotted_total   BIGINT NOT NULL,
    cutoff           BIGINT NOT NULL,
    lottery_entrants BIGINT NOT NULL,
    lottery_winners  BIGINT NOT NULL,
    unserved         BIGINT NOT NULL,
    ran_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    holds_placed_at  TIMESTAMPTZ
);

-- A waiting room's counters. Positions 1..prequeue_size were drawn at opening; later ones
-- are given in order of arrival. The serving counter only rises.
CREATE TABLE queue_state (
    offering_id    TEXT PRIMARY KEY REFERENCES offerings(id),
    shuffled_at    TIMESTAMPTZ,
    prequeue_size  BIGINT NOT NULL DEFAULT 0,
    next_position  BIGINT NOT NULL DEFAULT 0,   -- the last position given
    serving        BIGINT NOT NULL DEFAULT 0,   -- positions up to this one are admitted
    leader         UUID,                        -- the instance raising `serving`
    lease_until    TIMESTAMPTZ,
    CHECK (serving <= next_position)
);

CREATE TABLE queue_entries (
    offering_id    TEXT NOT NULL REFERENCES offerings(id),
    user_id        BIGINT NOT NULL,
    pseudonym      TEXT NOT NULL,
    position       BIGINT,                      -- NULL while waiting in the pre-queue
    joined_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (offering_id, user_id),
    UNIQUE (offering_id, position)
);

-- When the serving counter reached a value: an admission's window starts there, and this
-- survives a restart.
CREATE TABLE queue_steps (
    offering_id    TEXT NOT NULL REFERENCES offerings(id),
    serving        BIGINT NOT NULL,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (offering_id, serving)
);

-- Proof-of-work challenges already used, kept until they expire.
CREATE TABLE pow_spent (
    nonce          TEXT PRIMARY KEY,
    expires_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX pow_spent_expiry ON pow_spent (expires_at);
