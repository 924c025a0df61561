-- Sessions: one row per sign-in (a refresh-token family). The second factor is a fact of
-- the session, not of the account; a session ends at its absolute expiry whatever its
-- refreshes; and revoking it is what access tokens are checked against (they carry the
-- family as `sid`; every API process polls `revoked_at`).

CREATE TABLE sessions (
    family      UUID PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(user_id),
    mfa         BOOLEAN NOT NULL,                 -- passed a second factor in this session
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,             -- absolute: refreshing never extends it
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX sessions_user_live ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
