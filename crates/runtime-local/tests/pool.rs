//! Prepared data directories: each instance is a cluster of its own (system
//! identifier, nonce, password, key and certificate), the pool refills, and
//! no entry is handed out twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use strata_core::{InstanceName, InstanceRuntime};
use strata_testpg::Backend;
use uuid::Uuid;

/// The data directory of instance `id` in the fixture.
fn data_of(f: &common::Fixture, id: Uuid) -> std::path::PathBuf {
    f.runtime.instance_dir(id).join("data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_is_a_cluster_of_its_own_with_its_own_secrets() {
    // One runtime whose pool holds one entry (so of two creates at once, one
    // at least is prepared on the spot), one without a pool.
    let pooled = common::start(Backend::Sqlite, common::port_range(4), |c| c.pool_size = 1).await;
    let unpooled = common::start(Backend::Sqlite, common::port_range(4), |c| c.pool_size = 0).await;
    common::wait_pool(&pooled, "15", 1).await;
    let (a, b, c) = tokio::join!(
        pooled.create("alpha"),
        pooled.create("beta"),
        unpooled.create("gamma")
    );
    let instances = [
        (&pooled, a.unwrap()),
        (&pooled, b.unwrap()),
        (&unpooled, c.unwrap()),
    ];

    let mut identifiers = BTreeSet::new();
    let mut nonces = BTreeSet::new();
    let mut passwords = BTreeSet::new();
    let mut certificates = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for (f, instance) in &instances {
        f.wait_ready(&instance.name).await;
        let name = InstanceName::parse(&instance.name).unwrap();
        let credentials = f.runtime.credentials(&f.project, &name).await.unwrap();
        // The prepared role and database now carry the instance's name and password.
        let client = common::connect(&credentials).await;
        let row = client
            .query_one("SELECT current_user::text, current_database()::text", &[])
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            (instance.name.clone(), instance.name.clone())
        );
        passwords.insert(credentials.password.expose().to_owned());
        let data = data_of(f, instance.id);
        let (identifier, nonce) = common::control_data(&data);
        identifiers.insert(identifier);
        nonces.insert(nonce);
        certificates.insert(std::fs::read(data.join("server.crt")).unwrap());
        keys.insert(std::fs::read(data.join("server.key")).unwrap());
    }
    for f in [&pooled, &unpooled] {
        let (identifier, nonce) = common::control_data(&f.dir.path().join("pg/templates/15"));
        identifiers.insert(identifier);
        nonces.insert(nonce);
    }
    assert_eq!(
        identifiers.len(),
        5,
        "three instances and two templates, five system identifiers: {identifiers:?}"
    );
    assert_eq!(nonces.len(), 5, "and five mock-authentication nonces");
    assert_eq!(passwords.len(), 3);
    assert_eq!(certificates.len(), 3);
    assert_eq!(keys.len(), 3);

    for (f, instance) in &instances {
        f.delete(&instance.name).await;
    }
    pooled.runtime.shutdown().await;
    unpooled.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_refills_after_a_claim_and_never_hands_an_entry_out_twice() {
    let f = common::start(Backend::Sqlite, common::port_range(4), |c| c.pool_size = 2).await;
    let before = common::wait_pool(&f, "15", 2).await;

    let first = f.create("first").await.unwrap();
    f.wait_ready("first").await;
    let after = common::wait_pool(&f, "15", 2).await;
    let claimed: Vec<_> = before.difference(&after).collect();
    let added: Vec<_> = after.difference(&before).collect();
    assert_eq!(
        claimed.len(),
        1,
        "one entry left the pool: {before:?} → {after:?}"
    );
    assert_eq!(added.len(), 1, "and a new one took its place");

    // The next creates take the other entries, never the claimed one again.
    let second = f.create("second").await.unwrap();
    let third = f.create("third").await.unwrap();
    f.wait_ready("second").await;
    f.wait_ready("third").await;
    let remaining = common::wait_pool(&f, "15", 2).await;
    assert!(!remaining.contains(claimed[0].as_str()));
    let identifiers: BTreeSet<_> = [&first, &second, &third]
        .iter()
        .map(|i| common::control_data(&data_of(&f, i.id)).0)
        .collect();
    assert_eq!(identifiers.len(), 3, "three clusters, three identifiers");

    for name in ["first", "second", "third"] {
        f.delete(name).await;
    }
    f.runtime.shutdown().await;
}
