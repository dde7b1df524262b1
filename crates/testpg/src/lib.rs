//! Test fixture: Strata's store on both of its backends.
//!
//! SQLite gets a file in a fresh temporary directory. PostgreSQL gets a fresh,
//! empty database (`CREATE DATABASE` with a unique name, owned by a role that
//! is not a superuser) on a throwaway server that this test process starts on
//! first use from the installed PostgreSQL binaries (`initdb`, `postgres`;
//! 15 when installed), in a temporary directory, on a free port of
//! 127.0.0.1. When the process runs as root the server runs as the `postgres`
//! system user, since PostgreSQL refuses to run as root. The server is
//! stopped and its directory removed when the test process ends, however it
//! ends: nothing is left running after `cargo test`.
//!
//! A test written once runs on both backends through [`each_backend!`], which
//! expands it into a module holding a `sqlite` and a `postgres` test:
//!
//! ```no_run
//! use strata_testpg::{each_backend, TestDb};
//!
//! each_backend! {
//!     #[tokio::test]
//!     async fn projects_are_listed(backend) {
//!         let db = TestDb::new(backend).await;
//!         let store = db.open().await;
//!         let mut tx = store.begin().await.unwrap();
//!         tx.insert_project("default").await.unwrap();
//!         tx.commit().await.unwrap();
//!         assert_eq!(store.projects().await.unwrap(), ["default"]);
//!         // Tampering behind the store's back, on either backend:
//!         db.exec("DELETE FROM projects").await;
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! That is `projects_are_listed::sqlite` and `projects_are_listed::postgres`
//! in the test output; `cargo test postgres` runs the PostgreSQL half alone.
//! The body sees the backend as `backend` ([`Backend`]) and may name the
//! items of the file it is in. A test that needs only a URL (to pass to
//! `strata --database-url`, say) uses [`TestDb::url`].

mod server;
mod tls;

pub use tls::{Target, connect_tls, is_encrypted};

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;
pub use strata_store::Backend;
use strata_store::Store;

/// Bounds every connection the fixture makes itself.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One test's database: a SQLite file in its own temporary directory, or a
/// fresh database on this process's PostgreSQL server. Keep it alive for the
/// whole test (the SQLite file goes with it).
pub struct TestDb {
    backend: Backend,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, empty database on `backend`. Panics, naming what failed, when
    /// the backend cannot provide one.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()
                    .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
                Self {
                    backend,
                    url: format!("sqlite://{}/strata.db", dir.path().display()),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                backend,
                url: postgres_database().await,
                _dir: None,
            },
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL, as `strata --database-url` takes it. On PostgreSQL it
    /// holds the test role's password: fine for a throwaway server, but do not
    /// print it in assertions.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens the store on this database (applying the migrations).
    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the store on {:?}: {e}", self.backend))
    }

    /// Runs one SQL statement on its own connection, outside the store, the
    /// way someone with write access to the database would: for tests that
    /// tamper with what the store wrote. Open the store first (it creates the
    /// schema). Returns the rows affected.
    pub async fn exec(&self, sql: &str) -> u64 {
        sqlx::any::install_default_drivers();
        let run = async {
            let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
            let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(done.rows_affected())
        };
        match tokio_timeout(run).await {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => panic!("{sql:?} on {:?} failed: {e}", self.backend),
            None => panic!(
                "{sql:?} on {:?} did not finish within {} s",
                self.backend,
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
}

/// Where this process's PostgreSQL server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo {
    /// The postmaster's process id.
    pub pid: u32,
    /// Its temporary directory: `data/`, `postgres.log`, `initdb.log`.
    pub dir: &'static Path,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Makes this process's PostgreSQL server listen on `listen` as well as on
/// 127.0.0.1, and accept password logins from `clients` (a CIDR) there: for
/// pods on testenv's node, which reach the host at the host end of the
/// node's link. Call it before the server's first use (it panics after);
/// the URLs [`postgres_database`] returns still name 127.0.0.1.
pub fn expose_server(listen: std::net::Ipv4Addr, clients: &str) {
    server::expose(listen, clients);
}

/// This process's PostgreSQL server, started on first use.
pub fn postgres_server() -> ServerInfo {
    let server = server::shared();
    ServerInfo {
        pid: server.pid,
        dir: &server.dir,
        port: server.port,
    }
}

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// A `postgres://` URL naming a fresh, empty database on this process's
/// server, owned by a role that is not a superuser. Starts the server on
/// first use (this blocks the calling thread for about a second).
pub async fn postgres_database() -> String {
    let server = server::shared();
    let name = format!(
        "strata_test_{}",
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    let options = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(server.port)
        .username("postgres")
        .password(&server.password)
        .database("postgres");
    let create = async {
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} OWNER {}",
            server::OWNER
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    };
    match tokio_timeout(create).await {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("CREATE DATABASE {name} on the test server failed: {e}"),
        None => panic!(
            "CREATE DATABASE {name} on the test server did not finish within {} s",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
    format!(
        "postgres://{}:{}@127.0.0.1:{}/{name}",
        server::OWNER,
        server.password,
        server.port
    )
}

async fn tokio_timeout<T>(f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, f).await.ok()
}

/// Expands each test into a module with a `sqlite` and a `postgres` test
/// function, both carrying the test's attributes (`#[tokio::test]`, …), the
/// body seeing the backend under the name given in the signature. See the
/// crate documentation.
#[macro_export]
macro_rules! each_backend {
    ($(
        $(#[$attr:meta])*
        async fn $name:ident($backend:ident) $body:block
    )*) => {$(
        mod $name {
            #[allow(unused_imports, clippy::wildcard_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $backend: $crate::Backend = $crate::Backend::Sqlite;
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let $backend: $crate::Backend = $crate::Backend::Postgres;
                $body
            }
        }
    )*};
}
