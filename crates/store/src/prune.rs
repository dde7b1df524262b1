//! Deleting the rows no request can use any more, so that tables that grow
//! with every request do not grow for ever: idempotency records past their
//! retention, and refresh tokens that expired or were revoked. One
//! statement per table, the same on SQLite and PostgreSQL; run by a
//! background task ([`Store::spawn_pruning`]) on every API process — the
//! statements are idempotent, so replicas pruning at once do no harm.
//!
//! A refresh token that was used but has not expired stays: presenting it
//! again is how a stolen copy is detected (its whole sign-in is revoked).
//! Once it has expired it is refused either way.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{Result, Store, now_text};

/// How long a response is replayed for a retried `Idempotency-Key`.
pub const IDEMPOTENCY_RETENTION: time::Duration = time::Duration::hours(24);

/// How often [`Store::spawn_pruning`] prunes.
pub const PRUNE_INTERVAL: Duration = Duration::from_hours(1);

/// What one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub refresh_tokens: u64,
}

/// Idempotency records created before this are expired.
pub(crate) fn idempotency_cutoff(now: OffsetDateTime) -> String {
    now_text(now - IDEMPOTENCY_RETENTION)
}

impl Store {
    /// Deletes idempotency records older than [`IDEMPOTENCY_RETENTION`] and
    /// refresh tokens that expired or were revoked, as of `now`.
    pub async fn prune(&self, now: OffsetDateTime) -> Result<Pruned> {
        let idempotency_keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(idempotency_cutoff(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let refresh_tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE expires_at <= $1 OR revoked_at IS NOT NULL",
        )
        .bind(now_text(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(Pruned {
            idempotency_keys,
            refresh_tokens,
        })
    }

    /// Prunes now and then every `every` until `stop` completes. A failed
    /// round is logged and the next one tried.
    pub fn spawn_pruning(
        &self,
        every: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    _ = tick.tick() => match store.prune(OffsetDateTime::now_utc()).await {
                        Ok(p) if p != Pruned::default() => tracing::info!(
                            idempotency_keys = p.idempotency_keys,
                            refresh_tokens = p.refresh_tokens,
                            "pruned expired records"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot prune expired records"),
                    },
                }
            }
        })
    }
}
