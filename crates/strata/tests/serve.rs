//! `strata serve` as a user meets it: a real process on a temp dir and free
//! ports, real PostgreSQL servers, connections over TLS with the returned CA.

// Test helpers outside #[test] functions may panic: that is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::cast_possible_wrap,
    clippy::items_after_statements
)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Process;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use strata_client::{Client, CreateInstance, Credentials, Phase, UpdateInstance};

const PASSWORD: &str = "integration-admin-password";
const READY: Duration = Duration::from_secs(90);

struct Server {
    process: Process,
    url: String,
    admin_url: String,
    dir: PathBuf,
}

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

impl Server {
    fn start(dir: &Path, ports: (u16, u16)) -> Self {
        let port_range = format!("{}-{}", ports.0, ports.1);
        let (process, rx) = Process::start(
            "strata",
            dir,
            [
                OsStr::new("serve"),
                OsStr::new("--listen"),
                OsStr::new("127.0.0.1:0"),
                OsStr::new("--admin-listen"),
                OsStr::new("127.0.0.1:0"),
                OsStr::new("--quota-interval"),
                OsStr::new("1"),
                OsStr::new("--data-dir"),
                dir.as_os_str(),
                OsStr::new("--port-range"),
                OsStr::new(&port_range),
            ],
            &[("STRATA_ADMIN_PASSWORD", PASSWORD)],
        );
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("strata serve did not report that it is serving");
            if let Some(rest) = line.strip_prefix("Strata is serving on ") {
                let url = rest.split_whitespace().next().unwrap().to_owned();
                let admin_url = rest
                    .split("metrics: ")
                    .nth(1)
                    .unwrap()
                    .trim_end_matches(')')
                    .trim_end_matches("/metrics")
                    .to_owned();
                return Self {
                    process,
                    url,
                    admin_url,
                    dir: dir.to_path_buf(),
                };
            }
        }
    }

    async fn client(&self) -> Client {
        let mut c = Client::new(&self.url).unwrap();
        c.login("admin", PASSWORD).await.unwrap();
        c
    }

    fn pid(&self) -> Pid {
        self.process.pid()
    }

    /// SIGTERM, then a clean exit.
    fn stop(self) {
        self.process.stop();
    }

    /// SIGKILL: Strata ends at once; its PostgreSQL servers keep running.
    fn crash(self) {
        self.process.crash();
    }
}

async fn connect(c: &Credentials) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    strata_testpg::connect_tls(strata_testpg::Target {
        host: &c.host,
        port: c.port,
        user: &c.username,
        password: c.password.expose(),
        database: &c.database,
        ca_pem: &c.ca_certificate,
    })
    .await
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

fn create(name: &str) -> CreateInstance {
    CreateInstance {
        name: name.into(),
        ..CreateInstance::default()
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + READY;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn postmaster_pid(dir: &Path) -> i32 {
    let instances = dir.join("pg/instances");
    let inst = std::fs::read_dir(&instances)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(inst.join("data/postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_connect_update_rotate_restart_recover_delete() {
    let dir = data_dir();
    let server = Server::start(dir.path(), (26000, 26019));
    let api = server.client().await;

    let created = api
        .create_instance("default", &create("orders"), None)
        .await
        .unwrap();
    assert_eq!(created.status.phase, Phase::Provisioning);
    let ready = api
        .wait_for_phase("default", "orders", Phase::Ready, READY)
        .await
        .unwrap();
    let endpoint = ready.status.endpoint.unwrap();

    // Connect over TLS, verified against the returned CA, and keep some rows.
    let creds = api.credentials("default", "orders").await.unwrap();
    assert_eq!(creds.port, endpoint.port);
    // The store keeps the password sealed, with a key beside it (0600).
    {
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(dir.path().join("store.key")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let password = creds.password.expose().as_bytes();
        for file in ["strata.db", "strata.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(
                !bytes.windows(password.len()).any(|w| w == password),
                "{file} holds the password in clear"
            );
        }
    }
    let db = connect(&creds).await.unwrap();
    db.batch_execute("CREATE TABLE orders (id int primary key, item text); INSERT INTO orders VALUES (1, 'book'), (2, 'pen')")
        .await
        .unwrap();
    assert!(
        strata_testpg::is_encrypted(&db).await.unwrap(),
        "the connection is encrypted"
    );
    drop(db);

    // A bigger plan restarts the server with its settings.
    api.update_instance(
        "default",
        "orders",
        &UpdateInstance {
            plan: Some("small".into()),
            storage_gb: Some(5),
            ..UpdateInstance::default()
        },
    )
    .await
    .unwrap();
    api.wait_for_phase("default", "orders", Phase::Ready, READY)
        .await
        .unwrap();
    let db = connect(&creds).await.unwrap();
    let shared: String = db
        .query_one("SHOW shared_buffers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shared, "256MB");
    drop(db);

    // An ACL without this host shuts it out; putting it back lets it in.
    api.update_instance(
        "default",
        "orders",
        &UpdateInstance {
            acl: Some(vec!["10.0.0.0/8".into()]),
            ..UpdateInstance::default()
        },
    )
    .await
    .unwrap();
    api.wait_for_phase("default", "orders", Phase::Ready, READY)
        .await
        .unwrap();
    let refused = connect(&creds)
        .await
        .expect_err("connection outside the ACL accepted");
    assert!(db_message(&refused).contains("pg_hba.conf"), "{refused:?}");
    api.update_instance(
        "default",
        "orders",
        &UpdateInstance {
            acl: Some(vec!["127.0.0.0/8".into()]),
            ..UpdateInstance::default()
        },
    )
    .await
    .unwrap();
    api.wait_for_phase("default", "orders", Phase::Ready, READY)
        .await
        .unwrap();
    connect(&creds).await.unwrap();

    // Rotation: the old password stops working, the new one works.
    let rotated = api.rotate_credentials("default", "orders").await.unwrap();
    assert_ne!(rotated.password.expose(), creds.password.expose());
    let old = connect(&creds)
        .await
        .expect_err("old password still accepted");
    assert!(
        db_message(&old).contains("password authentication failed"),
        "{old:?}"
    );
    connect(&rotated).await.unwrap();

    // The supervisor brings a killed server back, and says so.
    let pid = postmaster_pid(dir.path());
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until("the restart event", || async {
        api.events("default", "orders", None)
            .await
            .unwrap()
            .iter()
            .any(|e| e.message.starts_with("PostgreSQL restarted"))
    })
    .await;
    let db = connect(&rotated).await.unwrap();
    assert_eq!(
        db.query("SELECT * FROM orders", &[]).await.unwrap().len(),
        2
    );
    drop(db);

    // Strata restarts: the instance is Ready again with its rows.
    server.stop();
    assert!(
        connect(&rotated).await.is_err(),
        "servers must stop with Strata"
    );
    let server = Server::start(dir.path(), (26000, 26019));
    let api = server.client().await;
    api.wait_for_phase("default", "orders", Phase::Ready, READY)
        .await
        .unwrap();
    let db = connect(&rotated).await.unwrap();
    let item: String = db
        .query_one("SELECT item FROM orders WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(item, "pen");
    drop(db);

    // Metrics are served on the admin listener.
    let metrics = reqwest::get(format!("{}/metrics", server.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strata_instances{phase=\"Ready\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_runtime_server_restarts_total 0"),
        "a new process counts afresh: {metrics}"
    );

    // Delete: connections refused, data gone, 404.
    let id = ready.id;
    api.delete_instance("default", "orders").await.unwrap();
    api.wait_deleted("default", "orders", READY).await.unwrap();
    assert!(connect(&rotated).await.is_err());
    assert!(
        !server
            .dir
            .join("pg/instances")
            .join(id.to_string())
            .exists()
    );
    assert_eq!(
        api.get_instance("default", "orders")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_create_is_finished_by_the_next_start_and_running_servers_are_adopted() {
    let dir = data_dir();
    let server = Server::start(dir.path(), (26020, 26039));
    let api = server.client().await;
    api.create_instance("default", &create("early"), None)
        .await
        .unwrap();
    api.wait_for_phase("default", "early", Phase::Ready, READY)
        .await
        .unwrap();
    let early_pid = postmaster_pid(dir.path());
    // Kill Strata while the second create is in flight.
    api.create_instance("default", &create("late"), None)
        .await
        .unwrap();
    let _ = server.pid();
    server.crash();

    let server = Server::start(dir.path(), (26020, 26039));
    let api = server.client().await;
    api.wait_for_phase("default", "late", Phase::Ready, READY)
        .await
        .unwrap();
    api.wait_for_phase("default", "early", Phase::Ready, READY)
        .await
        .unwrap();
    let events = api.events("default", "early", None).await.unwrap();
    assert!(
        events.iter().any(
            |e| e.message == format!("adopted the running PostgreSQL server (pid {early_pid})")
        ),
        "{events:?}"
    );
    for name in ["early", "late"] {
        let creds = api.credentials("default", name).await.unwrap();
        connect(&creds).await.unwrap();
    }
    for name in ["early", "late"] {
        api.delete_instance("default", name).await.unwrap();
    }
    for name in ["early", "late"] {
        api.wait_deleted("default", name, READY).await.unwrap();
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("pg/instances"))
            .unwrap()
            .count(),
        0
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_held_by_another_process_is_skipped() {
    let dir = data_dir();
    let held = std::net::TcpListener::bind("127.0.0.1:26040").unwrap();
    let server = Server::start(dir.path(), (26040, 26049));
    let api = server.client().await;
    api.create_instance("default", &create("skipper"), None)
        .await
        .unwrap();
    let ready = api
        .wait_for_phase("default", "skipper", Phase::Ready, READY)
        .await
        .unwrap();
    assert_ne!(ready.status.endpoint.unwrap().port, 26040);
    connect(&api.credentials("default", "skipper").await.unwrap())
        .await
        .unwrap();
    drop(held);
    api.delete_instance("default", "skipper").await.unwrap();
    api.wait_deleted("default", "skipper", READY).await.unwrap();
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_port_range_is_answered_503_naming_the_limit_with_retry_after() {
    use common::http::Http;
    use reqwest::{Method, StatusCode, header};
    let dir = data_dir();
    let server = Server::start(dir.path(), (26060, 26060));
    let api = server.client().await;
    api.create_instance("default", &create("holder"), None)
        .await
        .unwrap();
    let http = Http::login(&server.url, "admin", PASSWORD).await;
    let (status, headers, body) = http
        .send(
            Method::POST,
            "/v1/projects/default/instances",
            Some(serde_json::json!({ "name": "one-too-many" })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["type"], "urn:strata:problem:capacity", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("26060-26060"), "{detail}");
    assert!(detail.contains("--port-range"), "{detail}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Nothing was written for the refused create.
    assert_eq!(
        api.get_instance("default", "one-too-many")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    api.delete_instance("default", "holder").await.unwrap();
    api.wait_deleted("default", "holder", READY).await.unwrap();
    server.stop();
}
