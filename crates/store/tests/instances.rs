//! The store's guarantees for local instances and their service events, on
//! both backends (SQLite and a throwaway PostgreSQL server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use strata_core::events::NewServiceEvent;
use strata_core::{EventKind, Instance, InstanceStatus, Phase, Secret};
use strata_store::{Backend, InstanceRecord, SealingKey, SigningKeyRow, Store, StoreError};
use strata_testpg::{TestDb, each_backend};
use time::OffsetDateTime;
use uuid::Uuid;

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_project("default").await.unwrap();
    tx.commit().await.unwrap();
    (store, db)
}

fn record(name: &str, port: u16) -> InstanceRecord {
    let now = OffsetDateTime::now_utc();
    InstanceRecord {
        instance: Instance {
            id: Uuid::now_v7(),
            name: name.into(),
            project: "default".into(),
            engine: "postgresql".into(),
            version: "15".into(),
            plan: "micro".into(),
            storage_gb: 1,
            acl: vec!["10.0.0.0/8".into()],
            external_access: false,
            labels: BTreeMap::from([("team".into(), "a".into())]),
            status: InstanceStatus::provisioning(now),
            created_at: now,
            updated_at: now,
        },
        port,
        password: Secret::new("p".repeat(40)),
        generation: 1,
    }
}

async fn insert(store: &Store, r: &InstanceRecord) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    tx.insert_instance(r).await?;
    tx.commit().await
}

each_backend! {
    #[tokio::test]
    async fn round_trips_and_conflicts(backend) {
        let (store, _db) = store(backend).await;
        let a = record("orders", 15432);
        insert(&store, &a).await.unwrap();
        let back = store.instance("default", "orders").await.unwrap().unwrap();
        assert_eq!(back.instance, a.instance);
        assert_eq!(back.password.expose(), a.password.expose());

        assert!(
            matches!(insert(&store, &record("orders", 15433)).await, Err(StoreError::Conflict(w)) if w == "instance")
        );
        assert!(
            matches!(insert(&store, &record("other", 15432)).await, Err(StoreError::Conflict(w)) if w == "port")
        );
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.insert_project("default").await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);
        assert_eq!(
            store.all_instances().await.unwrap().len(),
            1,
            "a failed insert left a row"
        );
    }

    #[tokio::test]
    async fn rolled_back_transactions_publish_nothing(backend) {
        let (store, _db) = store(backend).await;
        let a = record("orders", 15432);
        let mut rx = store.subscribe();
        let mut tx = store.begin().await.unwrap();
        tx.insert_instance(&a).await.unwrap();
        tx.add_event(
            &a.instance,
            NewServiceEvent::info(EventKind::ProvisioningStep, "one"),
        )
        .await
        .unwrap();
        drop(tx);
        assert!(rx.try_recv().is_err());
        assert!(store.instance("default", "orders").await.unwrap().is_none());

        insert(&store, &a).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        for m in ["one", "two", "three"] {
            tx.add_event(
                &a.instance,
                NewServiceEvent::info(EventKind::ProvisioningStep, m),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(rx.try_recv().unwrap().event.message, "one");
        let all = store.events(a.instance.id, None, 10).await.unwrap();
        let messages: Vec<_> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "two", "three"]);
        let after = store
            .events(a.instance.id, Some(all[0].id), 10)
            .await
            .unwrap();
        assert_eq!(after.len(), 2);
    }

    #[tokio::test]
    async fn deletion_wins_over_status_updates(backend) {
        let (store, _db) = store(backend).await;
        let a = record("orders", 15432);
        insert(&store, &a).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let mut deleting = a.instance.status.clone();
        deleting.set_phase(Phase::Deleting, "DeleteRequested", "deleting", now);
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.mark_deleting(a.instance.id, &deleting, now)
                .await
                .unwrap()
        );
        // A second delete request finds it deleting already.
        assert!(
            !tx.mark_deleting(a.instance.id, &deleting, now)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();

        let mut ready = a.instance.status.clone();
        ready.set_phase(Phase::Ready, "Ready", "ok", now);
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.set_status(a.instance.id, &ready, now).await.unwrap());
        let mut spec = store.instance_by_id(a.instance.id).await.unwrap().unwrap();
        let read = spec.generation;
        spec.generation += 1;
        assert!(
            !tx.update_spec(&spec, read).await.unwrap(),
            "a spec change during deletion was accepted"
        );
        tx.commit().await.unwrap();
        let now_phase = store
            .instance_by_id(a.instance.id)
            .await
            .unwrap()
            .unwrap()
            .instance
            .status
            .phase;
        assert_eq!(now_phase, Phase::Deleting);
    }

    #[tokio::test]
    async fn secrets_are_sealed_with_the_store_key_and_older_ones_sealed_later(backend) {
        let (plain, db) = store(backend).await;
        let legacy = record("legacy", 15440);
        insert(&plain, &legacy).await.unwrap();
        let key = |byte: u8| SealingKey::from_bytes(&[byte; 32]).unwrap();
        let sealed = db.open().await.with_sealing_key(key(7));
        let orders = record("orders", 15441);
        insert(&sealed, &orders).await.unwrap();
        let signing = SigningKeyRow {
            kid: "k1".into(),
            algorithm: "EdDSA".into(),
            private_pem: Secret::new("-----BEGIN PRIVATE KEY----- test".to_owned()),
            public_key: "public".into(),
            created_at: OffsetDateTime::now_utc(),
        };
        let mut tx = sealed.begin().await.unwrap();
        tx.insert_signing_key(&signing).await.unwrap();
        tx.commit().await.unwrap();
        let sealed_rows = "UPDATE instances SET port = port WHERE password LIKE 'sealed:v1:%'";
        // In the database: the new secrets sealed, the older password in clear.
        assert_eq!(db.exec(sealed_rows).await, 1);
        assert_eq!(
            db.exec("UPDATE signing_keys SET kid = kid WHERE private_pem LIKE 'sealed:v1:%' AND private_pem NOT LIKE '%PRIVATE KEY%'").await,
            1
        );
        // With the key both read back; the signing key too.
        let read = |r: Option<InstanceRecord>| r.unwrap().password.expose().to_owned();
        let by_id = |s: &Store, r: &InstanceRecord| {
            let (s, id) = (s.clone(), r.instance.id);
            async move { s.instance_by_id(id).await }
        };
        assert_eq!(read(by_id(&sealed, &orders).await.unwrap()), orders.password.expose());
        assert_eq!(read(by_id(&sealed, &legacy).await.unwrap()), legacy.password.expose());
        let keys = sealed.signing_keys().await.unwrap();
        assert_eq!(keys[0].private_pem.expose(), signing.private_pem.expose());
        // Without the key, or with another one, a sealed value is an error
        // that says so, not garbage.
        let err = by_id(&plain, &orders).await.unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
        let other = db.open().await.with_sealing_key(key(8));
        assert!(matches!(by_id(&other, &orders).await, Err(StoreError::Sealing(_))));
        assert!(plain.signing_keys().await.is_err());

        // Sealing what is left: once, then nothing to do.
        assert_eq!(sealed.seal_existing().await.unwrap(), 1);
        assert_eq!(sealed.seal_existing().await.unwrap(), 0);
        assert_eq!(db.exec(sealed_rows).await, 2);
        assert_eq!(
            db.exec("UPDATE instances SET port = port WHERE password LIKE '%pppp%'").await,
            0,
            "a password in clear"
        );
        assert_eq!(read(by_id(&sealed, &legacy).await.unwrap()), legacy.password.expose());

        // A sealed value copied onto another row does not open there.
        db.exec("UPDATE instances SET password = (SELECT password FROM instances WHERE name = 'orders') WHERE name = 'legacy'").await;
        assert!(matches!(by_id(&sealed, &legacy).await, Err(StoreError::Sealing(_))));
    }

    #[tokio::test]
    async fn a_spec_change_computed_from_an_older_generation_is_refused(backend) {
        let (store, _db) = store(backend).await;
        let a = record("orders", 15432);
        insert(&store, &a).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let mut ready = a.instance.status.clone();
        ready.set_phase(Phase::Ready, "Ready", "ok", now);
        let mut tx = store.begin().await.unwrap();
        assert!(tx.set_status(a.instance.id, &ready, now).await.unwrap());
        tx.commit().await.unwrap();

        // Two requests read the same generation and change different fields.
        let read = store.instance_by_id(a.instance.id).await.unwrap().unwrap();
        let mut plan = read.clone();
        plan.instance.plan = "medium".into();
        plan.generation += 1;
        let mut labels = read.clone();
        labels.instance.labels = BTreeMap::from([("team".into(), "b".into())]);
        labels.generation += 1;
        let mut tx = store.begin().await.unwrap();
        assert!(tx.update_spec(&plan, read.generation).await.unwrap());
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        assert!(
            !tx.update_spec(&labels, read.generation).await.unwrap(),
            "the second change would have put the plan back"
        );
        tx.commit().await.unwrap();
        let now = store.instance_by_id(a.instance.id).await.unwrap().unwrap();
        assert_eq!(now.instance.plan, "medium");
        assert_eq!(now.generation, read.generation + 1);
    }

    #[tokio::test]
    async fn a_row_read_for_update_stays_locked_until_its_transaction_ends(backend) {
        let (store, db) = store(backend).await;
        let a = record("orders", 15432);
        insert(&store, &a).await.unwrap();
        let id = a.instance.id;

        let mut first = store.begin().await.unwrap();
        let seen = first.instance_for_update(id).await.unwrap().unwrap();
        assert_eq!(seen.instance.status.phase, Phase::Provisioning);
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                let seen = tx.instance_for_update(id).await.unwrap().unwrap();
                tx.commit().await.unwrap();
                seen.instance.status.phase
            }
        });
        if backend == Backend::Postgres {
            // The second reader must wait for the first one's row lock.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while waiting_on_locks(&db).await == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a second instance_for_update did not wait for the first one's lock"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let now = OffsetDateTime::now_utc();
        let mut ready = seen.instance.status.clone();
        ready.set_phase(Phase::Ready, "Ready", "ok", now);
        assert!(first.set_status(id, &ready, now).await.unwrap());
        first.commit().await.unwrap();
        assert_eq!(
            second.await.unwrap(),
            Phase::Ready,
            "the second reader saw the row as it was before the first one committed"
        );
    }
}

/// Sessions of this database waiting for a lock (PostgreSQL).
async fn waiting_on_locks(db: &TestDb) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    n
}
