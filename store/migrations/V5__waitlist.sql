-- Waitlist: people who asked for units of a sold-out zone, offered freed units in order.

CREATE TABLE waitlist_entries (
    offering_id    TEXT NOT NULL REFERENCES offerings(id),
    user_id        BIGINT NOT NULL,             -- one entry per person and offering, ever
    zone           INT NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    seq            BIGSERIAL,                   -- the order of joining
    status         TEXT NOT NULL DEFAULT 'waiting'
                   CHECK (status IN ('waiting', 'offered', 'left', 'ineligible')),
    reservation_id TEXT,                        -- the offer's hold, once offered
    joined_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    offered_at     TIMESTAMPTZ,
    PRIMARY KEY (offering_id, user_id)
);
CREATE INDEX waitlist_order ON waitlist_entries (offering_id, zone, seq) WHERE status = 'waiting';
