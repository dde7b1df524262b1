//! The fixture keeps its promises: a fresh database per test on a server that
//! runs as an unprivileged role on loopback, and is gone with the process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};
use strata_testpg::{Backend, TestDb, each_backend, postgres_database, postgres_server};

async fn query_one(url: &str, sql: &'static str) -> sqlx::postgres::PgRow {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let row = sqlx::query(sql).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    row
}

#[tokio::test]
async fn each_test_gets_a_fresh_database_owned_by_a_role_that_is_not_a_superuser() {
    let a = postgres_database().await;
    let b = postgres_database().await;
    assert_ne!(a, b);
    let row = query_one(
        &a,
        "SELECT current_database() AS db, r.rolsuper, r.rolcreatedb, inet_server_addr()::text AS addr, current_setting('server_version_num') AS version FROM pg_roles r WHERE r.rolname = current_user",
    )
    .await;
    assert!(!row.get::<bool, _>("rolsuper"));
    assert!(!row.get::<bool, _>("rolcreatedb"));
    assert!(row.get::<String, _>("addr").starts_with("127.0.0.1"));
    assert!(a.ends_with(&format!("/{}", row.get::<String, _>("db"))));
    let installed_15 = Path::new("/usr/lib/postgresql/15/bin/postgres").is_file();
    if installed_15 {
        assert!(row.get::<String, _>("version").starts_with("15"));
    }

    // The store migrates it; the other database stays empty.
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_project("default").await.unwrap();
    tx.commit().await.unwrap();
    let tables = query_one(
        &b,
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await;
    assert_eq!(tables.get::<i64, _>("n"), 0);
    assert_eq!(db.exec("DELETE FROM projects").await, 1);
    assert!(store.projects().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_server_does_not_run_as_root() {
    let server = postgres_server();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let real_uid: u32 = uid_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(real_uid, 0, "postgres runs as root: {uid_line}");
    assert!(server.dir.join("data/PG_VERSION").is_file());
}

each_backend! {
    #[tokio::test]
    async fn the_macro_runs_the_body_on_each_backend(backend) {
        let db = TestDb::new(backend).await;
        assert_eq!(db.backend(), backend);
        let store = db.open().await;
        assert_eq!(store.backend(), backend);
        store.ping().await.unwrap();
        let prefix = match backend {
            Backend::Sqlite => "sqlite://",
            Backend::Postgres => "postgres://",
        };
        assert!(db.url().starts_with(prefix));
    }
}

/// Runs this test binary's `report_the_server` test in a process of its own,
/// and checks that its server and directory are gone once that process has
/// ended.
#[test]
fn the_server_and_its_directory_go_with_the_test_process() {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "report_the_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child test did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    assert!(status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("testpg server: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no server line in {stdout}"));
    let (pid, dir) = line.split_once(' ').unwrap();
    let proc_dir = format!("/proc/{pid}");
    while Path::new(&proc_dir).exists() || Path::new(dir).exists() {
        assert!(
            Instant::now() < deadline,
            "the server {pid} or its directory {dir} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Used by the test above; on its own, it checks that the server answers.
#[tokio::test]
async fn report_the_server() {
    let url = postgres_database().await;
    let row = query_one(&url, "SELECT 1::BIGINT AS one").await;
    assert_eq!(row.get::<i64, _>("one"), 1);
    let server = postgres_server();
    assert!(
        Path::new(&format!("/proc/{}", server.pid)).exists(),
        "the server is not running"
    );
    println!("testpg server: {} {}", server.pid, server.dir.display());
}
