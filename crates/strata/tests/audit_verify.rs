//! `strata audit verify` as an operator runs it: against a data directory,
//! exit status 0 for an untouched log, non-zero naming the first broken event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use strata_core::{Actor, NewAuditEvent, Outcome, Target};
use strata_store::Store;

fn verify(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap()
}

fn sqlite3(db: &Path, sql: &str) {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 CLI is needed: apt-get install -y sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn verify_passes_on_an_untouched_log_and_names_an_edited_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("strata.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for name in ["orders", "billing", "search"] {
        let e = store
            .append_audit(NewAuditEvent {
                actor: Actor {
                    kind: "user".into(),
                    id: "id-alice".into(),
                    name: "alice".into(),
                },
                source_ip: Some("127.0.0.1".into()),
                user_agent: Some("curl/8".into()),
                request_id: Some("r-1".into()),
                project: Some("default".into()),
                action: "instance.create".into(),
                target: Target {
                    kind: "instance".into(),
                    id: None,
                    name: name.into(),
                },
                outcome: Outcome::of_status(202),
                details: serde_json::json!({}),
            })
            .await
            .unwrap();
        ids.push(e.id.to_string());
    }
    store.close().await;

    let export = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["audit", "export", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(export.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["id"], ids[1].as_str());
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);

    let ok = verify(dir.path());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("3 events"));

    // Someone with write access to the file rewrites history.
    sqlite3(
        &db,
        "UPDATE audit_events SET target_name = 'innocent' WHERE seq = 2",
    );
    let bad = verify(dir.path());
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("event 2") && err.contains(&ids[1]), "{err}");

    // Removing the evidence instead is seen too.
    sqlite3(
        &db,
        "UPDATE audit_events SET target_name = 'billing' WHERE seq = 2",
    );
    assert!(verify(dir.path()).status.success());
    sqlite3(&db, "DELETE FROM audit_events WHERE seq = 3");
    let cut = verify(dir.path());
    assert!(!cut.status.success());
    assert!(String::from_utf8_lossy(&cut.stderr).contains("event 3"));

    let none = verify(&dir.path().join("missing"));
    assert!(!none.status.success());
}
