-- Identity, offerings and the reservation projection.

CREATE TABLE users (
    user_id        BIGINT PRIMARY KEY,          -- also the ledger's person number
    identity_hash  BYTEA NOT NULL UNIQUE,       -- HMAC of the national ID; never the number
    email          TEXT NOT NULL UNIQUE,        -- lower-cased
    password_hash  TEXT NOT NULL,               -- argon2id PHC string
    display_name   TEXT,
    locale         TEXT NOT NULL DEFAULT 'th',
    role           TEXT NOT NULL DEFAULT 'citizen'
                   CHECK (role IN ('citizen', 'finance', 'regulator', 'official', 'admin')),
    totp_secret    TEXT,                        -- base32; set at enrolment
    totp_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    token_hash     BYTEA PRIMARY KEY,           -- SHA-256 of the opaque token
    user_id        BIGINT NOT NULL REFERENCES users(user_id),
    family         UUID NOT NULL,               -- rotation chain; reuse revokes the family
    expires_at     TIMESTAMPTZ NOT NULL,
    used_at        TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

CREATE TABLE offerings (
    id             TEXT PRIMARY KEY,
    number         SERIAL UNIQUE,               -- names the offering's ledgers in TigerBeetle
    config         JSONB NOT NULL,
    is_open        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Written only by the projector, from TigerBeetle; never on the reservation path.
CREATE TABLE reservations (
    reservation_id     TEXT PRIMARY KEY,        -- the hold id, hex
    offering_id        TEXT NOT NULL REFERENCES offerings(id),
    zone               INT NOT NULL,
    user_id            BIGINT NOT NULL,
    quantity           BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired')),
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    ledger_timestamp   BIGINT NOT NULL,           -- TigerBeetle timestamp of the hold (ns)
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reservations_user ON reservations (user_id, created_at DESC);
CREATE INDEX reservations_offering_status ON reservations (offering_id, status);
CREATE INDEX reservations_held_expiry ON reservations (expires_at) WHERE status = 'held';

-- How far the projector has read each ledger (TigerBeetle timestamps, nanoseconds).
CREATE TABLE projector_checkpoints (
    ledger         BIGINT PRIMARY KEY,
    last_timestamp BIGINT NOT NULL
);
