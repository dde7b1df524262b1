//! `strata audit verify` as an operator runs it, on both backends: against a
//! data directory (SQLite) or `--database-url` (PostgreSQL), exit status 0
//! for an untouched log, non-zero naming the first broken event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use strata_core::{Actor, NewAuditEvent, Outcome, Target};
use strata_store::Backend;
use strata_testpg::{TestDb, each_backend};

/// How an operator names the store: the data directory of `strata serve`
/// (its SQLite file is `strata.db` in it) or the database URL.
fn store_args(db: &TestDb) -> Vec<OsString> {
    match db.backend() {
        Backend::Sqlite => {
            let file = Path::new(db.url().strip_prefix("sqlite://").unwrap());
            assert_eq!(file.file_name().unwrap(), "strata.db");
            vec!["--data-dir".into(), file.parent().unwrap().into()]
        }
        Backend::Postgres => vec!["--database-url".into(), db.url().into()],
    }
}

fn strata(command: &str, store: &[OsString]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["audit", command])
        .args(store)
        .env_remove("STRATA_DATABASE_URL")
        .env_remove("STRATA_DATA_DIR")
        .output()
        .unwrap()
}

each_backend! {
    #[tokio::test]
    async fn verify_passes_on_an_untouched_log_and_names_an_edited_event(backend) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
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
        let args = store_args(&db);

        let export = strata("export", &args);
        assert!(
            export.status.success(),
            "{}",
            String::from_utf8_lossy(&export.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["id"], ids[1].as_str());
        assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);

        let ok = strata("verify", &args);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        assert!(String::from_utf8_lossy(&ok.stdout).contains("3 events"));

        // Someone with write access to the database rewrites history.
        db.exec("UPDATE audit_events SET target_name = 'innocent' WHERE seq = 2")
            .await;
        let bad = strata("verify", &args);
        assert!(!bad.status.success());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("event 2") && err.contains(&ids[1]), "{err}");

        // Removing the evidence instead is seen too.
        db.exec("UPDATE audit_events SET target_name = 'billing' WHERE seq = 2")
            .await;
        assert!(strata("verify", &args).status.success());
        db.exec("DELETE FROM audit_events WHERE seq = 3").await;
        let cut = strata("verify", &args);
        assert!(!cut.status.success());
        assert!(String::from_utf8_lossy(&cut.stderr).contains("event 3"));

        // A store that is not there is an error, not an empty log.
        let missing: Vec<OsString> = match backend {
            Backend::Sqlite => {
                let mut dir = args[1].clone();
                dir.push("/missing");
                vec!["--data-dir".into(), dir]
            }
            Backend::Postgres => vec!["--database-url".into(), format!("{}_missing", db.url()).into()],
        };
        let none = strata("verify", &missing);
        assert!(!none.status.success());
        if backend == Backend::Postgres {
            let password = db.url().split_once('@').unwrap().0.rsplit(':').next().unwrap();
            assert!(
                !String::from_utf8_lossy(&none.stderr).contains(password),
                "the error shows the database password"
            );
        }
    }
}
