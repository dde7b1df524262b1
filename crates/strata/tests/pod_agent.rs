//! `strata pod-agent` beside `strata pod-postgres` on the real PostgreSQL
//! binaries, with the pod's volumes laid out as the kubelet mounts them
//! (versioned directories and a `..data` link swapped atomically; see
//! `pod/mod.rs`): a rotation is checked over real password logins, an ACL
//! change over a real TLS login, both without restarting the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pod;

use std::path::Path;

use nix::sys::signal::Signal;
use pod::{Pod, Process, TENANT_PASSWORD, code, eventually_or};

const BAD_PASSWORD: &str = "28P01";
const REFUSED_BY_HBA: &str = "28000";

fn agent(pod: &Pod) -> Process {
    let mut cmd = pod.command(Path::new(env!("CARGO_BIN_EXE_strata")), "agent");
    cmd.arg("pod-agent")
        .arg("--credentials-dir")
        .arg(&pod.credentials)
        .arg("--tls-dir")
        .arg(&pod.tls)
        .arg("--config-dir")
        .arg(&pod.config)
        .arg("--socket-dir")
        .arg(&pod.socket)
        .arg(format!("--port={}", pod.port))
        .args(["--interval-ms", "100", "--log-format", "json"]);
    Process {
        child: cmd.spawn().unwrap(),
        signal: Signal::SIGTERM,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_reaches_the_running_server_and_the_old_one_stops_working() {
    let pod = Pod::new(&["127.0.0.1/32"]);
    let _server = pod.pod_postgres(None);
    pod.wait_started().await;
    let _agent = agent(&pod);
    let pid = pod.postmaster_pid();

    // A rotation: the kubelet swaps `..data` to a new version.
    pod.mount_credentials("second-Password-4", "r2");
    eventually_or(
        "the rotated password to work",
        async || {
            pod.connect("app", "second-Password-4", "app", true)
                .await
                .is_ok()
        },
        || pod.logs(),
    )
    .await;
    let old = pod.connect("app", TENANT_PASSWORD, "app", true).await;
    assert_eq!(code(&old).as_deref(), Some(BAD_PASSWORD), "{:?}", old.err());
    assert_eq!(pod.postmaster_pid(), pid, "the server restarted");

    // Only a SCRAM verifier reached the server, never the plaintext.
    let stored = pod.psql_as_superuser("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'");
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    let logged = pod.read_log("agent");
    assert!(!logged.contains("second-Password-4"), "{logged}");
    assert!(logged.contains(r#""rotation":"r2""#), "{logged}");
    let server_log = pod.read_log("pod-postgres");
    assert!(!server_log.contains("second-Password-4"), "{server_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_change_is_reloaded_without_a_restart() {
    // No ACL: nobody gets in over TCP.
    let pod = Pod::new(&[]);
    let _server = pod.pod_postgres(None);
    pod.wait_started().await;
    let _agent = agent(&pod);
    let pid = pod.postmaster_pid();
    let refused = pod.connect("app", TENANT_PASSWORD, "app", true).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some(REFUSED_BY_HBA),
        "{:?}",
        refused.err()
    );

    // The ConfigMap now admits loopback: the agent reloads the server.
    pod.mount_config(&["127.0.0.1/32"]);
    eventually_or(
        "the new ACL to admit the tenant",
        async || {
            pod.connect("app", TENANT_PASSWORD, "app", true)
                .await
                .is_ok()
        },
        || pod.logs(),
    )
    .await;
    assert_eq!(pod.postmaster_pid(), pid, "the server restarted");

    // And back: the entry is gone again.
    pod.mount_config(&[]);
    let last = std::cell::RefCell::new(None);
    eventually_or(
        "the ACL entry to be gone",
        async || {
            let code = code(&pod.connect("app", TENANT_PASSWORD, "app", true).await);
            let refused = code.as_deref() == Some(REFUSED_BY_HBA);
            *last.borrow_mut() = code;
            refused
        },
        || format!("last answer: {:?}\n{}", last.borrow(), pod.logs()),
    )
    .await;
    assert_eq!(pod.postmaster_pid(), pid, "the server restarted");
    let logged = pod.read_log("agent");
    assert!(logged.contains("reloaded its configuration"), "{logged}");
}
