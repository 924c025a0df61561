-- Unusual activity: the few events the rules read that no other table keeps, the alerts
-- the rules raise for staff, and the payer's account a bank may report with a payment.

-- Appended where the event happens (registration, a wrong second factor, a webhook whose
-- signature failed). `network` is the client's /24 (IPv4) or /48 (IPv6), never the full
-- address; `device` is a hash of the client's device id header, when it sent one.
CREATE TABLE activity_events (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('registration', 'mfa_failure', 'webhook_rejected')),
    user_id     BIGINT,
    network     TEXT,
    device      TEXT,
    detail      TEXT,                               -- the gateway of a rejected webhook
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX activity_events_kind_at ON activity_events (kind, at);

-- One row per firing: a rule fires at most once per subject per window. Staff acknowledge
-- with a note (audited). Rules never block anything by themselves.
CREATE TABLE alerts (
    id               BIGSERIAL PRIMARY KEY,
    rule             TEXT NOT NULL,
    subject          TEXT NOT NULL,                 -- `user:7`, `network:203.0.113.0/24`, ...
    severity         TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    evidence         JSONB NOT NULL,
    fired_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    acknowledged_at  TIMESTAMPTZ,
    acknowledged_by  BIGINT,
    note             TEXT
);
CREATE INDEX alerts_open ON alerts (fired_at DESC) WHERE acknowledged_at IS NULL;
CREATE INDEX alerts_rule_subject ON alerts (rule, subject, fired_at DESC);

-- The account the money came from, when the bank says (PromptPay reports it).
ALTER TABLE payment_notifications ADD COLUMN payer_account TEXT;
CREATE INDEX payment_notifications_payer ON payment_notifications (payer_account, received_at)
    WHERE payer_account IS NOT NULL;
CREATE INDEX reservations_cancelled ON reservations (updated_at) WHERE status = 'cancelled';
