//! `strata pod-postgres` against this machine's real PostgreSQL binaries,
//! with the pod's files as the operator builds them (see `pod/mod.rs`):
//! what a tenant, the exporter and the kubelet see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pod;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pod::{MONITOR_PASSWORD, Pod, TENANT_PASSWORD, code, eventually};

const INSUFFICIENT_PRIVILEGE: &str = "42501";
const REFUSED_BY_HBA: &str = "28000";
const BAD_PASSWORD: &str = "28P01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one story, read top to bottom
async fn the_tenant_owns_its_database_without_being_a_superuser_across_restarts() {
    let pod = Pod::new(&["127.0.0.1/32"]);
    let mut server = pod.pod_postgres(None);
    pod.wait_started().await;
    assert_eq!(pod.probe("/readyz").await, Some(200));
    assert_eq!(pod.probe("/livez").await, Some(200));

    // The tenant, with the password from the credentials file, over TLS.
    let tenant = pod
        .connect("app", TENANT_PASSWORD, "app", true)
        .await
        .unwrap();
    tenant
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3)")
        .await
        .unwrap();
    let row = tenant
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles \
             WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    let powers: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(powers, (false, false, false, false));
    let owners = tenant
        .query_one(
            "SELECT pg_get_userbyid(d.datdba), pg_get_userbyid(n.nspowner) \
             FROM pg_database d, pg_namespace n \
             WHERE d.datname = current_database() AND n.nspname = 'public'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (owners.get::<_, String>(0), owners.get::<_, String>(1)),
        ("app".into(), "app".into())
    );
    // No shell for the tenant, no turning TLS off.
    let shell = tenant
        .batch_execute("COPY (SELECT 1) TO PROGRAM 'id'")
        .await;
    assert_eq!(
        code(&shell).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{shell:?}"
    );
    let alter = tenant.batch_execute("ALTER SYSTEM SET ssl = off").await;
    assert_eq!(
        code(&alter).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{alter:?}"
    );
    // Without TLS the tenant is refused.
    let plain = pod.connect("app", TENANT_PASSWORD, "app", false).await;
    assert_eq!(
        code(&plain).as_deref(),
        Some(REFUSED_BY_HBA),
        "{:?}",
        plain.err()
    );
    // The superuser never over TCP, TLS or not.
    let su = pod.connect("postgres", "anything", "postgres", true).await;
    assert_eq!(code(&su).as_deref(), Some(REFUSED_BY_HBA), "{:?}", su.err());

    // The monitoring role: statistics from loopback, nothing of the tenant's.
    let monitor = pod
        .connect("strata_monitor", MONITOR_PASSWORD, "postgres", false)
        .await
        .unwrap();
    let db_stats = monitor
        .query_one(
            "SELECT count(*) FROM pg_stat_database WHERE datname = 'app'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(db_stats.get::<_, i64>(0), 1);
    let read = monitor.batch_execute("SELECT * FROM pg_authid").await;
    assert_eq!(code(&read).as_deref(), Some(INSUFFICIENT_PRIVILEGE));
    let into_app = pod
        .connect("strata_monitor", MONITOR_PASSWORD, "app", false)
        .await;
    assert_eq!(
        code(&into_app).as_deref(),
        Some(REFUSED_BY_HBA),
        "{:?}",
        into_app.err()
    );
    let into_app = pod
        .connect("strata_monitor", MONITOR_PASSWORD, "app", true)
        .await;
    assert_eq!(
        code(&into_app).as_deref(),
        Some(REFUSED_BY_HBA),
        "{:?}",
        into_app.err()
    );
    drop((tenant, monitor));

    // Someone with the superuser's socket undoes it all; and the Secret
    // carries a new password for the next start.
    pod.psql_as_superuser(
        "ALTER ROLE app SUPERUSER; GRANT pg_execute_server_program TO app; \
         REVOKE pg_monitor FROM strata_monitor; ALTER ROLE strata_monitor NOLOGIN; \
         ALTER DATABASE app OWNER TO postgres",
    );
    pod.mount_credentials("tenant-second-Password-3", "r2");

    // SIGTERM: a fast shutdown, and pod-postgres exits 0.
    let status = server.stop_with(Signal::SIGTERM);
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}: {}",
        pod.read_log("pod-postgres")
    );
    assert!(
        pod.read_log("pod-postgres")
            .contains("database system is shut down"),
        "{}",
        pod.read_log("pod-postgres")
    );

    // The next start keeps the rows and makes the roles right again.
    let _server = pod.pod_postgres(None);
    pod.wait_started().await;
    let old = pod.connect("app", TENANT_PASSWORD, "app", true).await;
    assert_eq!(code(&old).as_deref(), Some(BAD_PASSWORD), "{:?}", old.err());
    let tenant = pod
        .connect("app", "tenant-second-Password-3", "app", true)
        .await
        .unwrap();
    let count = tenant
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 3);
    let row = tenant
        .query_one(
            "SELECT rolsuper, pg_get_userbyid(d.datdba) FROM pg_roles, pg_database d \
             WHERE rolname = current_user AND d.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "app");
    let shell = tenant
        .batch_execute("COPY (SELECT 1) TO PROGRAM 'id'")
        .await;
    assert_eq!(
        code(&shell).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{shell:?}"
    );
    let monitor = pod
        .connect("strata_monitor", MONITOR_PASSWORD, "postgres", false)
        .await
        .unwrap();
    let member = monitor
        .query_one(
            "SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER')",
            &[],
        )
        .await
        .unwrap();
    assert!(member.get::<_, bool>(0));

    // Nothing secret in what pod-postgres and the server wrote.
    let log = pod.read_log("pod-postgres");
    assert!(
        log.contains("the tenant's and the monitoring role are in place"),
        "{log}"
    );
    for secret in [
        TENANT_PASSWORD,
        "tenant-second-Password-3",
        MONITOR_PASSWORD,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    assert!(
        !log.contains("SCRAM-SHA-256$"),
        "a verifier in the log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_server_dies_pod_postgres_exits_non_zero() {
    let pod = Pod::new(&[]);
    let mut server = pod.pod_postgres(None);
    pod.wait_started().await;
    kill(Pid::from_raw(pod.postmaster_pid()), Signal::SIGKILL).unwrap();
    let status = server.wait();
    assert!(!status.success(), "{status:?}");
    assert_eq!(status.code(), Some(128 + 9), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_major_is_refused_untouched() {
    let pod = Pod::new(&[]);
    pod.run_as.own_dir(&pod.pgdata, 0o700).unwrap();
    let other = pod.major - 1;
    std::fs::write(pod.pgdata.join("PG_VERSION"), format!("{other}\n")).unwrap();
    let mut server = pod.pod_postgres(None);
    let status = server.wait();
    assert!(!status.success(), "{status:?}");
    let log = pod.read_log("pod-postgres");
    assert!(
        log.contains(&format!("PostgreSQL {other} data"))
            && log.contains(&format!("runs PostgreSQL {}", pod.major)),
        "{log}"
    );
    let entries: Vec<_> = std::fs::read_dir(&pod.pgdata).unwrap().collect();
    assert_eq!(entries.len(), 1, "initdb ran over the old data");
}

/// A stand-in for postgres_exporter: each scrape logs in as the
/// monitoring role with the password in `password` and answers `pg_up`.
fn fake_exporter(pod: &Pod, password: Arc<std::sync::Mutex<String>>, stop: Arc<AtomicBool>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let db_port = pod.port;
    let rt = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let password = password.lock().unwrap().clone();
            let up = rt.block_on(async {
                let mut config = tokio_postgres::Config::new();
                config
                    .host("127.0.0.1")
                    .port(db_port)
                    .user("strata_monitor")
                    .password(password)
                    .dbname("postgres")
                    .connect_timeout(Duration::from_secs(3));
                match config.connect(tokio_postgres::NoTls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(conn);
                        client
                            .simple_query("SELECT 1 FROM pg_stat_database")
                            .await
                            .is_ok()
                    }
                    Err(_) => false,
                }
            });
            let body = format!("# TYPE pg_up gauge\npg_up {}\n", u8::from(up));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_is_ready_only_while_it_reaches_the_database() {
    let pod = Pod::new(&[]);
    let password = Arc::new(std::sync::Mutex::new(MONITOR_PASSWORD.to_owned()));
    let stop = Arc::new(AtomicBool::new(false));
    let exporter = fake_exporter(&pod, password.clone(), stop.clone());
    let _server = pod.pod_postgres(Some(&format!("http://127.0.0.1:{exporter}/metrics")));
    pod.wait_started().await;
    assert_eq!(pod.probe("/exporterz").await, Some(200));
    // A wrong password: the exporter answers, but pg_up is 0.
    *password.lock().unwrap() = "wrong".into();
    assert_eq!(pod.probe("/exporterz").await, Some(503));
    *password.lock().unwrap() = MONITOR_PASSWORD.into();
    eventually("the exporter to be ready again", async || {
        pod.probe("/exporterz").await == Some(200)
    })
    .await;
    // No exporter at all.
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(("127.0.0.1", exporter));
    eventually("the exporter probe to fail", async || {
        pod.probe("/exporterz").await == Some(503)
    })
    .await;
}
