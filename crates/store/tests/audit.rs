//! Memberships and the hash-chained audit log, on both backends (SQLite and
//! a throwaway PostgreSQL server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strata_core::{Actor, NewAuditEvent, Outcome, Role, Target};
use strata_store::{AuditFilter, Backend, Store};
use strata_testpg::{TestDb, each_backend};

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_project("default").await.unwrap();
    tx.insert_project("other").await.unwrap();
    tx.commit().await.unwrap();
    (store, db)
}

fn event(actor: &str, action: &str, instance: &str, status: u16) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor {
            kind: "user".into(),
            id: format!("id-{actor}"),
            name: actor.into(),
        },
        source_ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        request_id: Some("req".into()),
        project: Some("default".into()),
        action: action.into(),
        target: Target {
            kind: "instance".into(),
            id: None,
            name: instance.into(),
        },
        outcome: Outcome::of_status(status),
        details: serde_json::json!({"plan": "micro"}),
    }
}

each_backend! {
    #[tokio::test]
    async fn memberships_replace_roles_and_go_with_their_user(backend) {
        let (store, _db) = store(backend).await;
        let mut tx = store.begin().await.unwrap();
        let alice = tx
            .insert_user("alice", "hash", false)
            .await
            .unwrap()
            .to_string();
        assert!(
            tx.set_membership(&alice, "default", Role::Viewer)
                .await
                .unwrap()
        );
        assert!(
            !tx.set_membership(&alice, "default", Role::Owner)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.role_in(&alice, "default").await.unwrap(),
            Some(Role::Owner)
        );
        assert_eq!(store.role_in(&alice, "other").await.unwrap(), None);
        let members = store.members("default").await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].username, "alice");
        let mine = store.memberships_of(&alice).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].0.name, "default");

        let mut tx = store.begin().await.unwrap();
        assert!(tx.delete_user("alice").await.unwrap());
        assert!(!tx.delete_user("alice").await.unwrap());
        tx.commit().await.unwrap();
        assert!(store.members("default").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_untouched_chain_verifies_and_filters_work(backend) {
        let (store, _db) = store(backend).await;
        assert!(store.verify_audit_chain().await.unwrap().ok);
        let a = store
            .append_audit(event("alice", "instance.create", "orders", 202))
            .await
            .unwrap();
        let b = store
            .append_audit(event("bob", "instance.delete", "orders", 403))
            .await
            .unwrap();
        store
            .append_audit(event("alice", "instance.create", "billing", 202))
            .await
            .unwrap();
        assert_eq!(a.seq, 1);
        assert_eq!(b.prev_hash, a.hash);
        let report = store.verify_audit_chain().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.events, 3);

        let all = AuditFilter {
            project: "default".into(),
            ..AuditFilter::default()
        };
        let page = store.audit_events(&all, None, 2).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
        let rest = store.audit_events(&all, Some(2), 2).await.unwrap();
        assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(rest[0], a);

        let by = |f: AuditFilter| {
            let store = store.clone();
            async move {
                store
                    .audit_events(&f, None, 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.seq)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            by(AuditFilter {
                actor: Some("bob".into()),
                ..all.clone()
            })
            .await,
            [2]
        );
        assert_eq!(
            by(AuditFilter {
                instance: Some("orders".into()),
                ..all.clone()
            })
            .await,
            [2, 1]
        );
        assert_eq!(
            by(AuditFilter {
                action: Some("instance.create".into()),
                ..all.clone()
            })
            .await,
            [3, 1]
        );
        assert_eq!(
            by(AuditFilter {
                since: Some(b.time),
                ..all.clone()
            })
            .await,
            [3, 2]
        );
        assert_eq!(
            by(AuditFilter {
                until: Some(b.time),
                ..all.clone()
            })
            .await,
            [1]
        );
        assert!(
            by(AuditFilter {
                project: "other".into(),
                ..all.clone()
            })
            .await
            .is_empty()
        );
    }

    #[tokio::test]
    async fn an_edited_row_breaks_the_chain_at_that_event(backend) {
        let (store, db) = store(backend).await;
        for i in 0..4 {
            store
                .append_audit(event("alice", "instance.create", &format!("db{i}"), 202))
                .await
                .unwrap();
        }
        db.exec("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = 3").await;
        let report = store.verify_audit_chain().await.unwrap();
        assert!(!report.ok);
        let broken = report.first_broken.unwrap();
        assert_eq!(broken.seq, 3);
        assert!(broken.id.is_some());
        assert!(broken.reason.contains("edited"), "{}", broken.reason);
        assert_eq!(report.events, 2);
    }

    #[tokio::test]
    async fn deleted_rows_break_the_chain(backend) {
        let (store, db) = store(backend).await;
        for i in 0..4 {
            store
                .append_audit(event("alice", "instance.create", &format!("db{i}"), 202))
                .await
                .unwrap();
        }
        db.exec("DELETE FROM audit_events WHERE seq = 4").await;
        let report = store.verify_audit_chain().await.unwrap();
        assert_eq!(report.first_broken.unwrap().seq, 4, "a cut-off end is seen");
        db.exec("DELETE FROM audit_events WHERE seq = 2").await;
        let report = store.verify_audit_chain().await.unwrap();
        let broken = report.first_broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert!(broken.reason.contains("missing"), "{}", broken.reason);
    }

    #[tokio::test]
    async fn concurrent_appends_keep_one_chain(backend) {
        let (store, _db) = store(backend).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append_audit(event("alice", "instance.create", &format!("db{i}"), 202))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let report = store.verify_audit_chain().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.events, 20);
    }
}
