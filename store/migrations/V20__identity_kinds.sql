-- Identity kinds, their verification, and identity checks at a provider (KYC).
--
-- A person registers with one identity: a Thai national ID, a passport (issuing country,
-- ISO 3166-1 alpha-3, and number), a phone number or an email address. `identity_hash`
-- stays the one unique key: a keyed hash over kind, country and value (a Thai national ID
-- keeps the hash of its 13 digits alone, as before), so one identity is one account and the
-- raw value is never stored.
ALTER TABLE users
    ADD COLUMN identity_kind TEXT NOT NULL DEFAULT 'thai_national_id'
        CHECK (identity_kind IN ('thai_national_id', 'passport', 'phone', 'email')),
    ADD COLUMN identity_country TEXT              -- ISO 3166-1 alpha-3 of a passport's issuer
        CHECK (identity_country IS NULL OR identity_country ~ '^[A-Z]{3}$'),
    ADD COLUMN verification TEXT NOT NULL DEFAULT 'unverified'
        CHECK (verification IN ('unverified', 'pending', 'verified', 'rejected')),
    -- When `verification` last changed: every API process reads the changes of the last
    -- access-token lifetime, so a token issued before a change is judged by the change.
    ADD COLUMN verification_changed_at TIMESTAMPTZ;
CREATE INDEX users_verification_changed ON users (verification_changed_at)
    WHERE verification_changed_at IS NOT NULL;

-- One-time codes that verify a phone number or an email address: only the code's keyed
-- hash, a deadline and the attempts made. A new code replaces the last one.
CREATE TABLE identity_codes (
    user_id     BIGINT PRIMARY KEY REFERENCES users(user_id),
    code_hash   BYTEA NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    attempts    INT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Identity checks at a KYC provider: asked by the person, decided at the provider, told to
-- us by a signed callback naming the request.
CREATE TABLE kyc_requests (
    request_id  TEXT PRIMARY KEY,                 -- ours, random; the provider echoes it
    user_id     BIGINT NOT NULL REFERENCES users(user_id),
    provider    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'approved', 'rejected')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at  TIMESTAMPTZ
);
CREATE INDEX kyc_requests_user ON kyc_requests (user_id, created_at DESC);
