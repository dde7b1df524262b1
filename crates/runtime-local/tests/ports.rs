//! Concurrent creates and the port range: every create within the range is
//! accepted and becomes Ready; beyond it, a capacity answer names the limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_core::RuntimeError;
use strata_testpg::each_backend;

each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_creates_are_all_accepted_and_become_ready(backend) {
        const N: u16 = 50;
        let f = Arc::new(common::start(backend, common::port_range(N), |_| {}).await);
        let mut creates = tokio::task::JoinSet::new();
        for i in 0..N {
            let f = f.clone();
            creates.spawn(async move { f.create(&format!("burst-{i:02}")).await });
        }
        let mut names = BTreeSet::new();
        while let Some(created) = creates.join_next().await {
            let instance = created.unwrap().expect("every create within the range is accepted");
            names.insert(instance.name);
        }
        assert_eq!(names.len(), usize::from(N));
        let mut endpoints = BTreeSet::new();
        let mut identifiers = BTreeSet::new();
        for i in 0..N {
            let ready = f.wait_ready(&format!("burst-{i:02}")).await;
            endpoints.insert(ready.status.endpoint.unwrap().port);
            let data = f.runtime.instance_dir(ready.id).join("data");
            identifiers.insert(common::control_data(&data).0);
        }
        assert_eq!(endpoints.len(), usize::from(N), "each instance has a port of its own");
        // Whether from the pool or prepared on the spot, no cluster was handed out twice.
        assert_eq!(identifiers.len(), usize::from(N), "and a cluster of its own");
        for i in 0..N {
            f.delete(&format!("burst-{i:02}")).await;
        }
        f.runtime.shutdown().await;
    }
}

each_backend! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exhausted_port_range_is_a_capacity_answer_until_a_port_comes_free(backend) {
        let range = common::port_range(2);
        let f = common::start(backend, range.clone(), |_| {}).await;
        f.create("first").await.unwrap();
        f.create("second").await.unwrap();
        match f.create("third").await {
            Err(RuntimeError::AtCapacity { message, retry_after }) => {
                let named = format!("{}-{}", range.start(), range.end());
                assert!(message.contains(&named), "{message}");
                assert!(message.contains("--port-range"), "{message}");
                assert!(!retry_after.is_zero());
            }
            other => panic!("expected a capacity answer, got {other:?}"),
        }
        // A name that is taken stays taken: that answer comes first.
        match f.create("second").await {
            Err(RuntimeError::Conflict(message)) => assert!(message.contains("second"), "{message}"),
            other => panic!("expected a conflict at capacity for a taken name, got {other:?}"),
        }
        f.delete("first").await;
        let again = f.create("third").await.expect("the deleted instance's port is free again");
        f.wait_ready("third").await;
        assert_eq!(again.name, "third");
        f.delete("second").await;
        f.delete("third").await;
        f.runtime.shutdown().await;
    }
}
