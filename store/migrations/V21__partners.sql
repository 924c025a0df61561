-- Bank partners: organisations that reserve for their customers through the API, within
-- an allocation per offering that the ledger enforces (a partner quota account, the third
-- link of every hold they place).

CREATE TABLE partners (
    partner_id   INT PRIMARY KEY CHECK (partner_id BETWEEN 1 AND 65535), -- the ledger's number
    name         TEXT NOT NULL UNIQUE,
    client_id    TEXT NOT NULL UNIQUE,
    secret_hash  BYTEA NOT NULL,                 -- SHA-256 of the 256-bit client secret
    webhook_url  TEXT,                           -- where status webhooks go; NULL: none
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE SEQUENCE partners_number MINVALUE 1 MAXVALUE 65535 NO CYCLE OWNED BY partners.partner_id;

CREATE TABLE partner_allocations (
    partner_id   INT NOT NULL REFERENCES partners(partner_id),
    offering_id  TEXT NOT NULL REFERENCES offerings(id),
    units        BIGINT NOT NULL CHECK (units > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, offering_id)
);

-- Which channel placed each projected hold: the partner, or NULL for the person directly.
ALTER TABLE reservations ADD COLUMN partner_id INT;
CREATE INDEX reservations_partner ON reservations (partner_id, created_at DESC)
    WHERE partner_id IS NOT NULL;

-- A customer a partner reserves for may have no account of their own yet: a row with the
-- identity's keyed hash and no credentials (no email, no password) holds their person
-- number, so their cap is shared with any account they later register (which claims it).
ALTER TABLE users ALTER COLUMN email DROP NOT NULL, ALTER COLUMN password_hash DROP NOT NULL;
