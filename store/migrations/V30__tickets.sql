-- Named tickets: each seat of a confirmed concert reservation becomes a ticket bound to its
-- holder. The QR a holder shows is an Ed25519-signed token naming (reservation, seat,
-- generation); the row says which generation is current, whether the ticket was used at a
-- gate, and how often it changed hands. Gate staff get a role of their own.

ALTER TABLE users DROP CONSTRAINT IF EXISTS users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('citizen', 'finance', 'regulator', 'official', 'admin', 'gate'));

-- An admin may suspend an account (audited): it can then neither sign in nor reserve.
ALTER TABLE users ADD COLUMN suspended_at TIMESTAMPTZ;

-- Written by the projector in the transaction that projects the confirmation, one row per
-- seat; the primary key makes a replayed page (or a resent payment) create nothing new.
CREATE TABLE tickets (
    reservation_id  TEXT NOT NULL REFERENCES reservations(reservation_id),
    seat            INT NOT NULL CHECK (seat >= 1),       -- 1..quantity within the reservation
    offering_id     TEXT NOT NULL REFERENCES offerings(id),
    zone            INT NOT NULL,
    holder_user_id  BIGINT NOT NULL,
    generation      INT NOT NULL DEFAULT 0,               -- bumped by each transfer: names the valid QR
    transfers       INT NOT NULL DEFAULT 0,
    status          TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'used', 'cancelled')),
    used_at         TIMESTAMPTZ,
    used_by         BIGINT,                               -- the gate account that admitted it
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (reservation_id, seat)
);
CREATE INDEX tickets_holder ON tickets (holder_user_id, created_at DESC);

-- Every change of hands, in order: who gave, who received, and the generation it made.
CREATE TABLE ticket_transfers (
    id              BIGSERIAL PRIMARY KEY,
    reservation_id  TEXT NOT NULL,
    seat            INT NOT NULL,
    generation      INT NOT NULL,
    from_user_id    BIGINT NOT NULL,
    to_user_id      BIGINT NOT NULL,
    transferred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (reservation_id, seat) REFERENCES tickets (reservation_id, seat)
);
CREATE INDEX ticket_transfers_ticket ON ticket_transfers (reservation_id, seat);
CREATE INDEX ticket_transfers_at ON ticket_transfers (transferred_at);
