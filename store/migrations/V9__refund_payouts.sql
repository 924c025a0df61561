-- Refund payouts: each bank transfer that paid a refund back, one row per bank reference,
-- ever. The ledger moves the same money out of refunds payable (transfer id derived from
-- the reference), after this row commits; `reconcile check` finds any row it lacks.

CREATE TABLE refund_payouts (
    bank_reference  TEXT PRIMARY KEY,              -- the bank transfer's own reference
    gateway         TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,                 -- the refunded money's notification
    amount_satang   BIGINT NOT NULL CHECK (amount_satang > 0),
    paid_on         DATE NOT NULL,                 -- the bank transfer's date
    recorded_by     TEXT NOT NULL,                 -- audit actor
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (gateway, transaction_id) REFERENCES payment_notifications (gateway, transaction_id)
);
CREATE INDEX refund_payouts_refund ON refund_payouts (gateway, transaction_id);

-- How much of a refund is paid out; a refund is `paid_out` when this reaches its amount,
-- and never more.
ALTER TABLE payment_notifications
    ADD COLUMN paid_out_satang BIGINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT paid_out_within_amount CHECK (paid_out_satang <= amount_satang);
