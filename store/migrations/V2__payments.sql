-- Payments: what we asked people to pay (intents), what gateways told us arrived
-- (notifications), and what we tell people (outbox). TigerBeetle holds the money itself;
-- these tables hold the paperwork around it.

CREATE TABLE payment_intents (
    payment_id      TEXT PRIMARY KEY,              -- 120 random bits, 30 hex digits
    reservation_id  TEXT NOT NULL UNIQUE,          -- the hold id: one intent per reservation
    offering_id     TEXT NOT NULL REFERENCES offerings(id),
    user_id         BIGINT NOT NULL,
    method          TEXT NOT NULL CHECK (method IN ('promptpay')),
    gateway         TEXT NOT NULL CHECK (gateway IN ('sandbox', 'bank')),
    amount_satang   BIGINT NOT NULL CHECK (amount_satang > 0),  -- the deposit due, exactly
    reference       TEXT NOT NULL UNIQUE,          -- Ref1 printed in the QR
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'refund_due')),
    reason          TEXT,                          -- why a refund is due
    expires_at      TIMESTAMPTZ NOT NULL,          -- the hold's deadline
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_intents_user ON payment_intents (user_id, created_at DESC);

-- One row per gateway transaction, written before the ledger is touched. Banks resend:
-- the primary key makes every resend find the first delivery.
CREATE TABLE payment_notifications (
    gateway         TEXT NOT NULL CHECK (gateway IN ('sandbox', 'bank')),
    transaction_id  TEXT NOT NULL,
    reference       TEXT NOT NULL,                 -- as the bank sent it
    amount_satang   BIGINT NOT NULL CHECK (amount_satang > 0),
    paid_at         TIMESTAMPTZ NOT NULL,
    payment_id      TEXT REFERENCES payment_intents(payment_id),  -- NULL: unmatched
    ledger_id       TEXT NOT NULL,                 -- this money's 120-bit id in the ledger
    outcome         TEXT NOT NULL DEFAULT 'received'
                    CHECK (outcome IN ('received', 'succeeded', 'refund_due', 'unmatched')),
    reason          TEXT,
    body            TEXT NOT NULL,                 -- the delivery as signed, for audit
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_at      TIMESTAMPTZ,                   -- NULL: the worker must still apply it
    PRIMARY KEY (gateway, transaction_id)
);
CREATE INDEX payment_notifications_outcome ON payment_notifications (outcome, received_at DESC);
CREATE INDEX payment_notifications_unapplied ON payment_notifications (received_at)
    WHERE applied_at IS NULL;
CREATE INDEX payment_notifications_payment ON payment_notifications (payment_id);

-- Notifications to people, written in the same transaction as what they announce.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    send_key        TEXT NOT NULL UNIQUE,          -- one event, one key: receivers dedupe on it
    user_id         BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    args            JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    due_at          TIMESTAMPTZ NOT NULL DEFAULT now(),  -- not before; moved on by backoff
    attempts        INT NOT NULL DEFAULT 0,
    last_error      TEXT,
    sent_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (due_at) WHERE status = 'pending';
