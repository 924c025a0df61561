-- Sign-in attempts per account: password and second-factor failures back off and lock, and a
-- TOTP code works once (the last step used is kept).

ALTER TABLE users
    ADD COLUMN sign_in_failures  INT NOT NULL DEFAULT 0,   -- since the last success
    ADD COLUMN mfa_failures      INT NOT NULL DEFAULT 0,   -- second-factor failures, same
    ADD COLUMN last_failure_at   TIMESTAMPTZ,
    ADD COLUMN locked_until      TIMESTAMPTZ,              -- too many second-factor failures
    ADD COLUMN totp_last_step    BIGINT;                   -- unix seconds / 30 of the last code used
