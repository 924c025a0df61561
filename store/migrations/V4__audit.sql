-- Finance: the hash-chained audit trail, and bank statements for reconciliation.

-- Every state change a person or the system causes, in one chain. Each row's hash covers
-- the previous row's hash and this row's fields (see audit_field), so changing, removing
-- or reordering a row breaks the chain from there on; `reconcile audit verify` checks it.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,               -- 1, 2, 3, ... without gaps
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,                    -- `user:<id>`, `system:<task>`, `cli:<command>`
    action     TEXT NOT NULL,                    -- `offering.create`, `user.role_change`, ...
    subject    TEXT NOT NULL,                    -- what it happened to: `offering:<id>`, `user:<id>`
    before     JSONB,
    after      JSONB,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);

-- The chain's head: one row, locked by every append so that appends are serialised and the
-- chain never forks. It also pins the tail: deleting the last rows of audit_log leaves the
-- head pointing past them, which verification reports.
CREATE TABLE audit_head (
    one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq   BIGINT NOT NULL,
    hash  BYTEA NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, sha256(convert_to('allot/audit/v1', 'UTF8')));

-- One field of a row's hashed form: `<byte length>:<UTF-8 bytes>;`, or `~;` for NULL, so no
-- two different rows have the same form.
CREATE FUNCTION audit_field(t TEXT) RETURNS BYTEA LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IS NULL THEN convert_to('~;', 'UTF8')
           ELSE convert_to(length(convert_to(t, 'UTF8'))::text || ':', 'UTF8')
                || convert_to(t, 'UTF8') || convert_to(';', 'UTF8') END
$$;

-- Lines of bank statements (CSV or ISO 20022 camt.053), imported by `reconcile statement
-- import` and matched to payment notifications by `reconcile match`.
CREATE TABLE bank_statement_lines (
    id             BIGSERIAL PRIMARY KEY,
    statement_id   TEXT NOT NULL,                -- camt.053 Stmt/Id, or the CSV file's name
    entry_ref      TEXT NOT NULL,                -- the bank's id of the entry (or the line number)
    booked_on      DATE NOT NULL,
    amount_satang  BIGINT NOT NULL,              -- credits positive, debits negative
    currency       TEXT NOT NULL,
    reference      TEXT,                         -- Ref1 / creditor reference, as the bank wrote it
    end_to_end_id  TEXT,
    description    TEXT,
    source         TEXT NOT NULL,                -- the file it came from
    imported_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (statement_id, entry_ref)             -- importing a file twice adds nothing
);
CREATE INDEX bank_statement_lines_booked ON bank_statement_lines (booked_on);
