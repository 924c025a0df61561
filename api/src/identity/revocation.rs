//! Ending sessions: sign-out, sign-out everywhere, and the revocations that role and
//! second-factor changes cause. Every revocation reaches this process's [`Revocations`] at
//! once and every other process's within [`REVOCATION_POLL`] ([`Identity::watch_revocations`]),
//! so an access token stops working with its session, not minutes later.
//!
//! [`Revocations`]: super::tokens::Revocations
//! [`REVOCATION_POLL`]: super::tokens::REVOCATION_POLL

use std::time::SystemTime;

use allot_store::identity as store;
use uuid::Uuid;

use super::tokens::REVOCATION_POLL;
use super::Identity;
use crate::error::ApiResult;

impl Identity {
    /// Ends the sign-in a refresh token belongs to. An unknown token ends nothing and is no
    /// error: signing out is idempotent, and the answer must not tell a guesser whether a
    /// token exists.
    pub async fn sign_out(&self, refresh_token: &str) -> ApiResult<()> {
        if let Some(hash) = super::sessions::refresh_token_hash(refresh_token) {
            let revoked = store::revoke_family_of(&self.db.get().await?, &hash).await?;
            self.revoked_now(revoked);
        }
        Ok(())
    }

    /// Ends every sign-in of the user; their access tokens stop working too.
    pub async fn sign_out_everywhere(&self, user_id: i64) -> ApiResult<()> {
        self.revoke_sessions(&self.db.get().await?, user_id, None).await?;
        tracing::info!(user_id, "signed out everywhere");
        Ok(())
    }

    /// Revokes every session of the user but `keep`: after a role or second-factor change,
    /// no session may go on with what it was granted before.
    pub(super) async fn revoke_sessions(
        &self,
        client: &impl allot_store::GenericClient,
        user_id: i64,
        keep: Option<Uuid>,
    ) -> ApiResult<()> {
        let revoked = store::revoke_user(client, user_id, keep).await?;
        self.revoked_now(revoked);
        Ok(())
    }

    /// Refuses the tokens of sessions this process just revoked.
    pub(super) fn revoked_now(&self, sessions: Vec<Uuid>) {
        if !sessions.is_empty() {
            self.tokens.revoked.insert(sessions, SystemTime::now());
        }
    }

    /// Reads the sessions other processes revoke, every [`REVOCATION_POLL`], forever. It
    /// starts one access-token lifetime back, so a restarted process refuses what was
    /// revoked while it was down.
    pub async fn watch_revocations(self) {
        let mut since = None;
        loop {
            match self.poll_revocations(since).await {
                Ok(next) => since = Some(next),
                Err(e) => tracing::warn!(error = %e, "reading revoked sessions failed"),
            }
            tokio::time::sleep(REVOCATION_POLL).await;
        }
    }

    /// One poll: revocations after `since` (the database's clock), answering where the next
    /// poll starts. It overlaps the last one by a few seconds: a transaction that commits
    /// late carries an earlier `revoked_at` than rows already read.
    async fn poll_revocations(&self, since: Option<SystemTime>) -> ApiResult<SystemTime> {
        const OVERLAP: std::time::Duration = std::time::Duration::from_secs(10);
        let client = self.db.get().await?;
        let now = store::now(&client).await?;
        let from = match since {
            Some(since) => since - OVERLAP,
            None => now - self.tokens.revoked.horizon(),
        };
        for (family, at) in store::revoked_since(&client, from).await? {
            self.tokens.revoked.insert([family], at);
        }
        Ok(now)
    }
}
