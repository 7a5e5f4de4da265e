//! Upkeep of the database, shared by `portcullis tokens flush-expired` and
//! the server's pruning task (`PRUNE_INTERVAL`): one rule for what expired
//! records are, whoever deletes them.

use crate::service::AuthService;
use crate::store::StoreError;

impl AuthService {
    /// Delete the token and session records expired by now (their count is
    /// returned), and the login throttle rows whose window
    /// (`LOGIN_FAILURE_WINDOW`) is over and that block nothing, so that
    /// table does not grow without bound.
    pub async fn flush_expired(&self) -> Result<u64, StoreError> {
        let now = self.engine().now();
        let tokens = self.token_store().flush_expired(now).await?;
        let now_ms = now.saturating_mul(1000);
        let window_ms = self.settings().throttle.window.saturating_mul(1000);
        let throttle = self
            .throttle_store()
            .prune_login_failures(now_ms, now_ms.saturating_sub(window_ms))
            .await?;
        if throttle > 0 {
            tracing::info!(removed = throttle, "pruned expired login throttle records");
        }
        Ok(tokens)
    }
}
