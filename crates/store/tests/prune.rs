//! Pruning: expired idempotency records and spent refresh tokens are
//! deleted, live ones stay — on both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use strata_store::{Backend, Pruned, Store, StoreError};
use strata_testpg::{TestDb, each_backend};
use time::OffsetDateTime;
use uuid::Uuid;

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    (store, db)
}

async fn record(store: &Store, key: &str) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    tx.insert_idempotent_response("default", key, "fp", 202, "{}")
        .await?;
    tx.commit().await
}

/// A refresh token of `user` expiring `expires_in` from now; its id.
async fn refresh_token(store: &Store, user: Uuid, expires_in: time::Duration) -> (Uuid, Uuid) {
    let (id, family) = (Uuid::now_v7(), Uuid::now_v7());
    let now = OffsetDateTime::now_utc();
    let mut tx = store.begin().await.unwrap();
    tx.insert_refresh_token(
        id,
        family,
        &user.to_string(),
        &id.to_string(),
        now,
        now + expires_in,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, family)
}

async fn refresh_exists(store: &Store, id: Uuid) -> bool {
    store
        .refresh_token_by_hash(&id.to_string())
        .await
        .unwrap()
        .is_some()
}

each_backend! {
    #[tokio::test]
    async fn expired_records_go_and_live_ones_stay(backend) {
        let (store, db) = store(backend).await;
        record(&store, "old").await.unwrap();
        record(&store, "new").await.unwrap();
        // "old" was recorded two days ago.
        let two_days_ago = (OffsetDateTime::now_utc() - time::Duration::days(2))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let sql = format!("UPDATE idempotency_keys SET created_at = '{two_days_ago}' WHERE key = 'old'");
        assert_eq!(db.exec(&sql).await, 1);
        // An expired record is not replayed, even before it is pruned.
        assert!(store.idempotent_response("default", "old").await.unwrap().is_none());
        assert!(store.idempotent_response("default", "new").await.unwrap().is_some());

        let mut tx = store.begin().await.unwrap();
        let user = tx.insert_user("bob", "hash", false).await.unwrap();
        tx.commit().await.unwrap();
        let (live, _) = refresh_token(&store, user, time::Duration::days(30)).await;
        let (used, _) = refresh_token(&store, user, time::Duration::days(30)).await;
        let (expired, _) = refresh_token(&store, user, time::Duration::seconds(-1)).await;
        let (revoked, family) = refresh_token(&store, user, time::Duration::days(30)).await;
        let now = OffsetDateTime::now_utc();
        let mut tx = store.begin().await.unwrap();
        assert!(tx.use_refresh_token(used, now).await.unwrap());
        tx.revoke_refresh_family(family, now).await.unwrap();
        tx.commit().await.unwrap();

        let pruned = store.prune(OffsetDateTime::now_utc()).await.unwrap();
        assert_eq!(pruned, Pruned { idempotency_keys: 1, refresh_tokens: 2 });
        assert!(refresh_exists(&store, live).await);
        // A used token stays until it expires: presenting it again must
        // still be recognised as a replay.
        assert!(refresh_exists(&store, used).await);
        assert!(!refresh_exists(&store, expired).await);
        assert!(!refresh_exists(&store, revoked).await);
        assert!(store.idempotent_response("default", "new").await.unwrap().is_some());
        // Nothing left to prune.
        assert_eq!(store.prune(OffsetDateTime::now_utc()).await.unwrap(), Pruned::default());
    }

    #[tokio::test]
    async fn an_expired_key_may_be_used_again_and_a_live_one_not(backend) {
        let (store, db) = store(backend).await;
        record(&store, "k").await.unwrap();
        assert!(matches!(record(&store, "k").await, Err(StoreError::Conflict(_))));
        assert_eq!(db.exec("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00Z'").await, 1);
        // Expired but not pruned yet: the key records the new response.
        record(&store, "k").await.unwrap();
        assert!(store.idempotent_response("default", "k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_background_task_prunes_until_stopped(backend) {
        let (store, _db) = store(backend).await;
        let mut tx = store.begin().await.unwrap();
        let user = tx.insert_user("bob", "hash", false).await.unwrap();
        tx.commit().await.unwrap();
        let (expired, _) = refresh_token(&store, user, time::Duration::seconds(-1)).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = store.spawn_pruning(Duration::from_hours(1), async move {
            let _ = stopped.await;
        });
        // The first round runs at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        while refresh_exists(&store, expired).await {
            assert!(Instant::now() < deadline, "the expired token was never pruned");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
