//! A local runtime on a fresh temporary data directory and a fresh store
//! (either backend), with a port range of its own.

#![allow(dead_code)] // not every test binary uses every helper

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use strata_core::{
    CreateInstance, Instance, InstanceName, InstanceRuntime, Phase, ProjectName, RuntimeError,
};
use strata_runtime_local::{LocalConfig, LocalRuntime};
use strata_store::Store;
use strata_testpg::{Backend, TestDb};

/// How long an instance may take to become Ready, or to be gone, before the
/// test fails (a failure guard, not a measurement).
pub const DEADLINE: Duration = Duration::from_mins(3);

static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);

/// `len` ports no other runtime of this test process uses, and (by the
/// process id) probably none of another test process running beside it.
pub fn port_range(len: u16) -> RangeInclusive<u16> {
    let slot = NEXT_RANGE.fetch_add(1, Ordering::SeqCst);
    let base = 21000 + u16::try_from(std::process::id() % 10).unwrap() * 1000 + slot * 100;
    assert!(
        len <= 100 && slot < 10,
        "the fixture hands out 10 ranges of up to 100 ports"
    );
    base..=base + len - 1
}

pub struct Fixture {
    pub runtime: LocalRuntime,
    pub store: Store,
    pub project: ProjectName,
    _db: TestDb,
    pub dir: tempfile::TempDir,
}

/// A runtime on `backend` with `ports`; `configure` may change the rest.
pub async fn start(
    backend: Backend,
    ports: RangeInclusive<u16>,
    configure: impl FnOnce(&mut LocalConfig),
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        // The PostgreSQL user must traverse it when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let db = TestDb::new(backend).await;
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_project("default").await.unwrap();
    tx.commit().await.unwrap();
    let mut cfg = LocalConfig::new(dir.path().to_path_buf());
    cfg.ports = ports;
    configure(&mut cfg);
    let mut registry = prometheus_client::registry::Registry::default();
    let runtime = LocalRuntime::start(cfg, store.clone(), &mut registry)
        .await
        .unwrap();
    Fixture {
        runtime,
        store,
        project: ProjectName::parse("default").unwrap(),
        _db: db,
        dir,
    }
}

impl Fixture {
    pub async fn create(&self, name: &str) -> Result<Instance, RuntimeError> {
        let spec = CreateInstance {
            name: name.to_owned(),
            ..CreateInstance::default()
        }
        .validate(self.runtime.plans(), self.runtime.versions())
        .unwrap();
        self.runtime.create(&self.project, spec).await
    }

    /// Polls until `name` is Ready; fails on Failed or at the deadline.
    pub async fn wait_ready(&self, name: &str) -> Instance {
        let name = InstanceName::parse(name).unwrap();
        let start = Instant::now();
        loop {
            let i = self.runtime.get(&self.project, &name).await.unwrap();
            match i.status.phase {
                Phase::Ready => return i,
                Phase::Failed => panic!("{name} failed: {}", i.status.message),
                _ => {}
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{name} is {} after {DEADLINE:?}",
                i.status.phase
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deletes `name` and polls until it is gone.
    pub async fn delete(&self, name: &str) {
        let name = InstanceName::parse(name).unwrap();
        self.runtime.delete(&self.project, &name).await.unwrap();
        let start = Instant::now();
        while self.runtime.get(&self.project, &name).await.is_ok() {
            assert!(
                start.elapsed() < DEADLINE,
                "{name} still exists after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What `pg_controldata` reports of the cluster in `data`: its system
/// identifier and its mock-authentication nonce.
pub fn control_data(data: &std::path::Path) -> (String, String) {
    let installs = strata_runtime_local::Installations::discover(&[]);
    let bindir = installs
        .bindir(&installs.majors()[0].to_string())
        .unwrap()
        .to_path_buf();
    let out = std::process::Command::new(bindir.join("pg_controldata"))
        .arg("-D")
        .arg(data)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_controldata: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map_or_else(
            || panic!("pg_controldata shows no {name:?}: {text}"),
            |v| v.trim().to_owned(),
        )
    };
    (
        field("Database system identifier:"),
        field("Mock authentication nonce:"),
    )
}

/// The prepared clusters in the pool of `major`, by directory name.
pub fn pool_entries(f: &Fixture, major: &str) -> std::collections::BTreeSet<String> {
    let dir = f.dir.path().join("pg/pool").join(major);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                // Entries still being prepared are `<uuid>.tmp`.
                .filter(|p| p.extension().is_none())
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until the pool of `major` holds `n` prepared clusters.
pub async fn wait_pool(f: &Fixture, major: &str, n: usize) -> std::collections::BTreeSet<String> {
    let start = Instant::now();
    loop {
        let entries = pool_entries(f, major);
        if entries.len() == n {
            return entries;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the pool holds {entries:?} after {DEADLINE:?}, not {n} entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects as the instance's role, over TLS checked against its CA.
pub async fn connect(c: &strata_core::Credentials) -> tokio_postgres::Client {
    strata_testpg::connect_tls(strata_testpg::Target {
        host: &c.host,
        port: c.port,
        user: &c.username,
        password: c.password.expose(),
        database: &c.database,
        ca_pem: &c.ca_certificate,
    })
    .await
    .unwrap()
}
