//! A pod's files on this machine, for `strata pod-postgres` and `strata
//! pod-agent` against the real PostgreSQL binaries: the ConfigMap (the
//! operator's own postgresql.conf and pg_hba.conf, with the pod's paths
//! mapped into a temp dir), the TLS Secret, the credentials Secret laid out
//! as the kubelet mounts it (versioned directories, a `..data` link swapped
//! atomically), the socket directory and the data volume. The processes run
//! as the `postgres` system user, as the pod's uid 999 does.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use strata_core::{Acl, PlanCatalog};
use strata_runtime_local::{Installations, RunAs};
use tokio_postgres::NoTls;

/// How long any one wait may take.
pub const DEADLINE: Duration = Duration::from_mins(1);

/// A child process stopped with `signal` (then killed) on drop.
pub struct Process {
    pub child: Child,
    pub signal: Signal,
}

impl Process {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// Sends `signal` and waits (bounded) for the process to end.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        kill(self.pid(), signal).unwrap();
        self.wait()
    }

    /// Waits (bounded) for the process to end by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(self.pid(), self.signal);
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn eventually(what: &str, check: impl AsyncFnMut() -> bool) {
    eventually_or(what, check, String::new).await;
}

/// As `eventually`, and a timeout's message carries `context()`.
pub async fn eventually_or(
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The PostgreSQL major installed here.
pub fn installed_major() -> u32 {
    Installations::discover(&[])
        .majors()
        .last()
        .copied()
        .expect("no PostgreSQL installed: apt-get install -y postgresql-15")
}

pub struct Pod {
    _base: tempfile::TempDir,
    pub base: PathBuf,
    pub config: PathBuf,
    pub tls: PathBuf,
    pub credentials: PathBuf,
    pub socket: PathBuf,
    /// The claim's root; the cluster is `pgdata` in it.
    pub volume: PathBuf,
    pub pgdata: PathBuf,
    pub port: u16,
    pub probe_port: u16,
    pub ca_pem: String,
    pub run_as: RunAs,
    pub major: u32,
    versions: AtomicU32,
}

/// The tenant's and the monitoring role's passwords a pod starts with.
pub const TENANT_PASSWORD: &str = "tenant-first-Password-1";
pub const MONITOR_PASSWORD: &str = "monitor-Password-kept-2";

impl Pod {
    /// A pod whose ACL admits `acl` (CIDR blocks).
    pub fn new(acl: &[&str]) -> Self {
        let base_dir = tempfile::tempdir().unwrap();
        let base = base_dir.path().to_path_buf();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
        let run_as = RunAs::detect("postgres").unwrap();
        let dir = |name: &str| {
            let d = base.join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            d
        };
        let (config, tls, credentials) = (dir("config"), dir("tls"), dir("credentials"));
        let socket = base.join("socket");
        let volume = base.join("volume");
        for d in [&socket, &volume] {
            run_as.own_dir(d, 0o700).unwrap();
        }
        let pod = Self {
            pgdata: volume.join("pgdata"),
            _base: base_dir,
            base,
            config,
            tls,
            credentials,
            socket,
            volume,
            port: free_port(),
            probe_port: free_port(),
            ca_pem: String::new(),
            run_as,
            major: installed_major(),
            versions: AtomicU32::new(0),
        };
        let pod = pod.with_certificate();
        pod.mount_config(acl);
        pod.mount_credentials(TENANT_PASSWORD, "");
        pod
    }

    fn with_certificate(mut self) -> Self {
        use strata_core::tls;
        let now = time::OffsetDateTime::now_utc();
        let ca = tls::issue_ca(&tls::generate_key().unwrap(), now).unwrap();
        let server = tls::issue_server(
            &ca,
            &tls::generate_key().unwrap(),
            "127.0.0.1",
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            now,
            time::Duration::days(1),
        )
        .unwrap();
        std::fs::write(self.tls.join("tls.crt"), &server.cert_pem).unwrap();
        std::fs::write(self.tls.join("ca.crt"), &ca.cert_pem).unwrap();
        self.run_as
            .write_private(
                &self.tls.join("tls.key"),
                server.key_pem.expose().as_bytes(),
            )
            .unwrap();
        self.ca_pem = ca.cert_pem;
        self
    }

    /// Writes a new version of a mounted volume: files in a fresh directory,
    /// `..data` swapped to it with a rename, as the kubelet does.
    fn mount_version(&self, dir: &Path, files: &[(&str, String)], private: bool) {
        let n = self.versions.fetch_add(1, Ordering::SeqCst);
        let version = format!("..2026_01_01_00_00_{n:02}.{n}");
        let versioned = dir.join(&version);
        std::fs::create_dir(&versioned).unwrap();
        std::fs::set_permissions(&versioned, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (key, value) in files {
            let path = versioned.join(key);
            if private {
                self.run_as.write_private(&path, value.as_bytes()).unwrap();
            } else {
                std::fs::write(&path, value).unwrap();
            }
            let link = dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
            }
        }
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    }

    /// The ConfigMap the operator builds for `acl`, with the pod's paths
    /// and port mapped to this pod's.
    pub fn mount_config(&self, acl: &[&str]) {
        let plan = PlanCatalog::default().get("micro").unwrap().clone();
        let acl = Acl::parse(&acl.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        let conf = strata_kube::build::postgresql_conf(&plan)
            .replace("/etc/strata/", &format!("{}/", self.config.display()))
            .replace("/etc/strata-tls", &self.tls.display().to_string())
            .replace("/var/run/postgresql", &self.socket.display().to_string())
            .replace("port = 5432", &format!("port = {}", self.port))
            .replace("listen_addresses = '*'", "listen_addresses = '127.0.0.1'");
        assert!(conf.contains(&format!("port = {}", self.port)), "{conf}");
        let hba = strata_kube::build::pg_hba_conf(&acl);
        self.mount_version(
            &self.config,
            &[("postgresql.conf", conf), ("pg_hba.conf", hba)],
            false,
        );
    }

    /// The credentials Secret as the operator builds it (username `app`,
    /// database `app`, the monitoring role's keys).
    pub fn mount_credentials(&self, password: &str, rotation: &str) {
        self.mount_version(
            &self.credentials,
            &[
                ("username", "app".into()),
                ("password", password.into()),
                ("database", "app".into()),
                ("rotation", rotation.into()),
                ("monitor-username", "strata_monitor".into()),
                ("monitor-password", MONITOR_PASSWORD.into()),
            ],
            true,
        );
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.base.join(format!("{name}.log"))
    }

    pub fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// A command run as the postgres system user, its output appended to
    /// `<name>.log`.
    pub fn command(&self, program: &Path, name: &str) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .unwrap();
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir("/");
        if self.run_as.drop_privileges {
            cmd.uid(self.run_as.uid).gid(self.run_as.gid);
        }
        cmd
    }

    /// `strata pod-postgres` on this pod, as the pod's postgres container runs it.
    pub fn pod_postgres(&self, exporter_metrics: Option<&str>) -> Process {
        let mut cmd = self.command(Path::new(env!("CARGO_BIN_EXE_strata")), "pod-postgres");
        cmd.arg("pod-postgres")
            .arg(format!("--pg-version={}", self.major))
            .arg("--data-dir")
            .arg(&self.pgdata)
            .arg("--config-file")
            .arg(self.config.join("postgresql.conf"))
            .arg("--credentials-dir")
            .arg(&self.credentials)
            .arg("--socket-dir")
            .arg(&self.socket)
            .arg(format!("--port={}", self.port))
            .arg(format!("--probe-listen=127.0.0.1:{}", self.probe_port))
            .args(["--shutdown-timeout", "20", "--log-format", "json"]);
        if let Some(url) = exporter_metrics {
            cmd.arg(format!("--exporter-metrics={url}"));
        }
        Process {
            child: cmd.spawn().unwrap(),
            signal: Signal::SIGTERM,
        }
    }

    /// The HTTP status of a probe path.
    pub async fn probe(&self, path: &str) -> Option<u16> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.probe_port))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The logs of the pod's processes, to explain a failure.
    pub fn logs(&self) -> String {
        ["pod-postgres", "agent"]
            .iter()
            .map(|name| format!("--- {name}.log\n{}", self.read_log(name)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn wait_started(&self) {
        eventually_or(
            "/startupz to answer 200",
            async || self.probe("/startupz").await == Some(200),
            || self.logs(),
        )
        .await;
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Runs `sql` with psql as the superuser over the socket (peer
    /// authentication as the postgres OS user); returns its output.
    pub fn psql_as_superuser(&self, sql: &str) -> String {
        let bindir = Installations::discover(&[])
            .bindir(&self.major.to_string())
            .unwrap()
            .to_path_buf();
        let mut cmd = Command::new(bindir.join("psql"));
        cmd.arg("-h")
            .arg(&self.socket)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ])
            .current_dir("/");
        if self.run_as.drop_privileges {
            cmd.uid(self.run_as.uid).gid(self.run_as.gid);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Connects over TCP to 127.0.0.1 as `user` to `database`, with TLS
    /// verified against the pod's CA, or without TLS.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
        tls: bool,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        if tls {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
                .unwrap();
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, conn) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await?;
            tokio::spawn(conn);
            Ok(client)
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = config.connect(NoTls).await?;
            tokio::spawn(conn);
            Ok(client)
        }
    }
}

/// The SQLSTATE of a failed connection or statement.
pub fn code(result: &Result<impl Sized, tokio_postgres::Error>) -> Option<String> {
    match result {
        Ok(_) => None,
        Err(e) => Some(
            e.code()
                .map_or_else(|| format!("no code: {e:?}"), |c| c.code().to_owned()),
        ),
    }
}
