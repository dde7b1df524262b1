//! `strata api` and the key that seals the token signing keys in its store:
//! without one it refuses to start, says why and how, and touches nothing —
//! unless told that the keys may stay in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `strata api` with `extra` flags against a SQLite store in `dir` and
/// no reachable Kubernetes; the process ends by itself either way.
fn api(dir: &Path, extra: &[&str]) -> Output {
    let store = format!("sqlite://{}", dir.join("strata.db").display());
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "api",
            "--database-url",
            &store,
            "--issuer",
            "http://127.0.0.1",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .args(extra)
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .env("STRATA_ADMIN_PASSWORD", "integration-admin-password")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("STRATA_STORE_KEY_FILE")
        .env_remove("STRATA_ALLOW_UNSEALED_KEYS")
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn strata_api_refuses_to_start_without_a_store_key_unless_told() {
    let dir = tempfile::tempdir().unwrap();

    let refused = api(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    // Why, and the two ways out.
    for needle in [
        "no store key",
        "sign tokens",
        "--store-key-file",
        "--allow-unsealed-keys",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
    assert!(
        !dir.path().join("strata.db").exists(),
        "the store was touched"
    );

    // Told explicitly, it goes on: as far as Kubernetes, which is not there.
    let allowed = api(dir.path(), &["--allow-unsealed-keys"]);
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(!allowed.status.success());
    assert!(stderr.contains("connecting to Kubernetes"), "{stderr}");
    assert!(!stderr.contains("no store key"), "{stderr}");
    assert!(stdout.contains("signing keys stay in clear"), "{stdout}");
    assert!(dir.path().join("strata.db").exists());

    // A key file and the permission to go without one contradict each other.
    let key = dir.path().join("store.key");
    strata_store::seal::load_or_create_key_file(&key).unwrap();
    let both = api(
        dir.path(),
        &[
            "--allow-unsealed-keys",
            "--store-key-file",
            key.to_str().unwrap(),
        ],
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}
