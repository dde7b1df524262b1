//! `strata pod-postgres`: the main process of an instance's postgres
//! container. An init container copies the `strata` binary into the pod
//! (`strata copy-self`), so any image with PostgreSQL server binaries
//! serves: no entrypoint script of one image is relied on.
//!
//! It finds the server binaries of the instance's major version,
//! initialises an empty data directory (superuser `postgres`, reachable by
//! peer authentication over the pod's Unix socket only), starts `postgres`
//! with the mounted configuration as its child and stays its supervisor:
//! SIGTERM/SIGINT become a fast shutdown, and it exits with the server's
//! status, so that the kubelet restarts the container when PostgreSQL dies.
//! Once the server accepts connections it makes the tenant's role (no
//! superuser, owner of its database) and the monitoring role what they
//! must be, with the passwords of the mounted credentials files. It answers
//! the kubelet's probes over HTTP. The pure decisions are in
//! `strata_runtime_local::pod`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use strata_core::Secret;
use strata_runtime_local::pod::{self, DataDir, Start};
use strata_runtime_local::sql::{self, PodRoles};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::pod_agent::read_volume;
use crate::serve::init_logging;

#[derive(Args, Debug)]
pub struct PodPostgresArgs {
    /// The instance's PostgreSQL major version: the server binaries must be
    /// of it, and so must an existing data directory.
    #[arg(long = "pg-version")]
    pg_version: u32,
    /// The data directory (created by initdb when missing or empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// postgresql.conf (from the instance's ConfigMap).
    #[arg(long)]
    config_file: PathBuf,
    /// The mounted credentials Secret: `username`, `password`, `database`,
    /// `monitor-username`, `monitor-password`.
    #[arg(long)]
    credentials_dir: PathBuf,
    /// PostgreSQL's Unix socket directory (as postgresql.conf says).
    #[arg(long, default_value = "/var/run/postgresql")]
    socket_dir: PathBuf,
    /// PostgreSQL's port (as postgresql.conf says).
    #[arg(long, default_value_t = 5432)]
    port: u16,
    /// Where the kubelet's probes are answered: `/startupz`, `/readyz`,
    /// `/livez`, and `/exporterz` for the metrics exporter.
    #[arg(long, default_value = "0.0.0.0:8008")]
    probe_listen: SocketAddr,
    /// The metrics exporter's metrics: `/exporterz` answers 200 only when
    /// they say `pg_up 1`.
    #[arg(long)]
    exporter_metrics: Option<String>,
    /// How long a fast shutdown may take before an immediate one, in seconds.
    #[arg(long, default_value_t = 50)]
    shutdown_timeout: u64,
    /// Log format: json or text.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

/// The pod's roles, as the mounted credentials files say.
struct Roles {
    tenant: String,
    password: Secret,
    database: String,
    monitor: String,
    monitor_password: Secret,
}

fn read_roles(dir: &Path) -> anyhow::Result<Roles> {
    let mut files = read_volume(
        dir,
        &[
            "username",
            "password",
            "database",
            "monitor-username",
            "monitor-password",
        ],
    )
    .with_context(|| format!("reading the credentials in {}", dir.display()))?;
    let mut take = |key: &str| {
        files
            .remove(key)
            .filter(|v| !v.is_empty())
            .with_context(|| format!("the credentials hold no {key}"))
    };
    let roles = Roles {
        tenant: take("username")?,
        password: Secret::new(take("password")?),
        database: take("database")?,
        monitor: take("monitor-username")?,
        monitor_password: Secret::new(take("monitor-password")?),
    };
    pod::check_role_names(&roles.tenant, &roles.monitor)?;
    Ok(roles)
}

/// Peer authentication maps the OS user of a socket client to the role of
/// the same name: this process (and the credentials agent, same uid) must
/// be the OS user `postgres`.
fn check_os_user() -> anyhow::Result<()> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        bail!(
            "pod-postgres runs as root; PostgreSQL refuses to. Run the container as the postgres user (uid 999)"
        );
    }
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .with_context(|| format!("uid {uid} has no user entry in this image"))?;
    if user.name != pod::SUPERUSER {
        bail!(
            "uid {uid} is named {:?} in this image, but peer authentication needs the OS user {:?}: \
             the image must name the server's user postgres",
            user.name,
            pod::SUPERUSER
        );
    }
    Ok(())
}

async fn initialise(bindir: &Path, data: &Path) -> anyhow::Result<()> {
    let staging = pod::initdb_staging(data);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    info!(dir = %data.display(), "initialising a new data directory");
    let status = Command::new(bindir.join("initdb"))
        .args(pod::initdb_args(&staging))
        .stdin(Stdio::null())
        .status()
        .await
        .context("running initdb")?;
    if !status.success() {
        bail!("initdb failed ({status}); its output is above");
    }
    std::fs::rename(&staging, data)
        .with_context(|| format!("moving the new cluster to {}", data.display()))?;
    Ok(())
}

/// What the probes read.
struct Health {
    /// The roles were made right since this start.
    roles_ready: AtomicBool,
    socket_dir: PathBuf,
    port: u16,
    exporter_metrics: Option<String>,
    http: reqwest::Client,
}

impl Health {
    async fn superuser(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        sql::connect_as(&self.socket_dir, self.port, pod::SUPERUSER).await
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

fn answer(ok: bool) -> (StatusCode, &'static str) {
    if ok {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Started: the server accepted connections and the roles are made.
async fn startupz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    answer(h.roles_ready.load(Ordering::SeqCst))
}

/// Ready: as started, and a query runs now.
async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    let query = async {
        let client = h.superuser().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    let ran = tokio::time::timeout(PROBE_TIMEOUT, query)
        .await
        .ok()
        .flatten()
        .is_some();
    answer(h.roles_ready.load(Ordering::SeqCst) && ran)
}

/// Alive: the server answers on its socket, even if only to say it is
/// recovering or full.
async fn livez(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    let answered = match tokio::time::timeout(PROBE_TIMEOUT, h.superuser()).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.as_db_error().is_some(),
        Err(_) => false,
    };
    answer(answered)
}

/// The exporter reaches the database: its own metrics say `pg_up 1`.
async fn exporterz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    let Some(url) = &h.exporter_metrics else {
        return (StatusCode::NOT_FOUND, "no exporter\n");
    };
    let body = async {
        let response = h.http.get(url).send().await.ok()?;
        response.text().await.ok()
    };
    let up = tokio::time::timeout(PROBE_TIMEOUT, body)
        .await
        .ok()
        .flatten()
        .is_some_and(|text| pod::exporter_up(&text));
    answer(up)
}

async fn serve_probes(listener: tokio::net::TcpListener, health: Arc<Health>) {
    let app = Router::new()
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .route("/livez", get(livez))
        .route("/exporterz", get(exporterz))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app).await {
        error!(error = %e, "the probe server stopped");
    }
}

/// An error the next attempt will not fix: the superuser cannot log in.
fn is_fatal(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *c == SqlState::INVALID_PASSWORD
    )
}

/// Waits until the server accepts the superuser, then makes the roles
/// right; retried until it works. Returns only on an error that retrying
/// cannot fix.
async fn ensure_roles(health: Arc<Health>, roles: Roles) -> anyhow::Error {
    let mut accepted = false;
    let mut last_error = String::new();
    loop {
        match health.superuser().await {
            Ok(_) if !accepted => {
                accepted = true;
                info!("PostgreSQL accepts connections");
            }
            Ok(_) => {}
            Err(e) if is_fatal(&e) => {
                return anyhow::Error::new(e).context(
                    "the superuser postgres cannot connect over the socket by peer authentication \
                     (a data directory made by an earlier pod layout has no role postgres)",
                );
            }
            Err(_) => {
                // Not up yet (starting, or recovering): try again soon.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let result = sql::ensure_pod_roles(
            &health.socket_dir,
            health.port,
            &PodRoles {
                tenant: &roles.tenant,
                password: &roles.password,
                database: &roles.database,
                monitor: &roles.monitor,
                monitor_password: &roles.monitor_password,
            },
        )
        .await;
        match result {
            Ok(()) => {
                health.roles_ready.store(true, Ordering::SeqCst);
                info!(
                    role = %roles.tenant,
                    database = %roles.database,
                    monitor = %roles.monitor,
                    "the tenant's and the monitoring role are in place"
                );
                return std::future::pending().await;
            }
            Err(e) => {
                let text = format!("{e:#}");
                if text != last_error {
                    warn!(error = %text, "making the roles failed; will retry");
                    last_error = text;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// As a container's PID 1, pod-postgres inherits every orphan of the
/// container (a process that `kubectl exec` started and left behind): it
/// reaps them as they end, so none stays a zombie. Never the server itself,
/// whose exit status `Child::wait` collects: a pending child is looked at
/// first (`WNOWAIT`) and reaped only when it is another process.
async fn reap_orphans(server: Pid) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
    let Ok(mut children) = signal(SignalKind::child()) else {
        warn!("no SIGCHLD handler: orphans of the container will not be reaped");
        return;
    };
    while children.recv().await.is_some() {
        loop {
            let pending = waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            match pending.ok().and_then(|status| status.pid()) {
                Some(pid) if pid != server => {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
                // Nothing has ended, or the server has: its waiter reaps it.
                _ => break,
            }
        }
    }
}

fn signal_child(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Fast shutdown, then an immediate one if it takes longer than `timeout`.
async fn stop(child: &mut Child, timeout: Duration) -> std::io::Result<std::process::ExitStatus> {
    signal_child(child, Signal::SIGINT);
    if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
        return status;
    }
    warn!("the fast shutdown took too long; shutting down immediately");
    signal_child(child, Signal::SIGQUIT);
    child.wait().await
}

/// Runs the server until it ends; returns the container's exit code.
pub async fn run(args: PodPostgresArgs) -> anyhow::Result<i32> {
    init_logging(&args.log_format);
    check_os_user()?;
    let roles = read_roles(&args.credentials_dir)?;
    let bindir = pod::find_bindir(args.pg_version)?;
    info!(bindir = %bindir.display(), version = args.pg_version, "PostgreSQL server binaries");

    // Signals first: as a container's PID 1 without a handler, a SIGTERM
    // during initdb would be ignored until the kubelet's SIGKILL.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let found = pod::inspect_data_dir(&args.data_dir)?;
    if pod::start_plan(&args.data_dir, &found, args.pg_version)? == Start::Initialise {
        initialise(&bindir, &args.data_dir).await?;
    } else if let DataDir::Cluster { major } = &found {
        info!(dir = %args.data_dir.display(), %major, "starting on the existing data directory");
    }
    // A volume's group ownership management may have widened the mode;
    // PostgreSQL wants the data directory private.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", args.data_dir.display()))?;
    }

    let listener = tokio::net::TcpListener::bind(args.probe_listen)
        .await
        .with_context(|| format!("listening for probes on {}", args.probe_listen))?;

    let mut child = Command::new(bindir.join("postgres"))
        .arg("-D")
        .arg(&args.data_dir)
        .arg("-c")
        .arg(format!("config_file={}", args.config_file.display()))
        .stdin(Stdio::null())
        // Its own process group: a terminal's Ctrl-C is for the supervisor
        // to pass on, not for the server to take directly.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .context("starting postgres")?;
    info!(pid = child.id(), "postgres started");
    if std::process::id() == 1
        && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
    {
        tokio::spawn(reap_orphans(Pid::from_raw(pid)));
    }

    let health = Arc::new(Health {
        roles_ready: AtomicBool::new(false),
        socket_dir: args.socket_dir.clone(),
        port: args.port,
        exporter_metrics: args.exporter_metrics.clone(),
        // Plain HTTP to the exporter beside it: no root certificates (the
        // PostgreSQL image may have none, and the platform's would fail).
        http: reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .tls_certs_only([])
            .build()
            .context("an HTTP client for the exporter probe")?,
    });
    tokio::spawn(serve_probes(listener, health.clone()));
    let ensure = ensure_roles(health, roles);
    tokio::pin!(ensure);

    let timeout = Duration::from_secs(args.shutdown_timeout);
    let status = tokio::select! {
        status = child.wait() => {
            let status = status.context("waiting for postgres")?;
            error!(%status, "postgres ended on its own");
            status
        }
        _ = term.recv() => {
            info!("SIGTERM: fast shutdown");
            stop(&mut child, timeout).await?
        }
        _ = int.recv() => {
            info!("SIGINT: fast shutdown");
            stop(&mut child, timeout).await?
        }
        fatal = &mut ensure => {
            error!(error = %format!("{fatal:#}"), "stopping the server");
            stop(&mut child, timeout).await?;
            return Ok(1);
        }
    };
    let code = pod::exit_code(status);
    info!(code, "postgres stopped");
    Ok(code)
}

/// `strata copy-self`: copies this executable to `to` (mode 0755), written
/// beside it and renamed, so that a container that runs it never sees a
/// half-written file. The init container of an instance's pod uses it: the
/// Strata image needs no shell or `cp`.
pub fn copy_self(to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().context("finding this executable")?;
    let mut tmp_name = to.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = to.with_file_name(tmp_name);
    std::fs::copy(&me, &tmp).with_context(|| format!("copying to {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, to).with_context(|| format!("moving into {}", to.display()))?;
    println!("copied {} to {}", me.display(), to.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write_credentials(dir: &Path, files: &[(&str, &str)]) {
        for (k, v) in files {
            std::fs::write(dir.join(k), v).unwrap();
        }
    }

    #[test]
    fn roles_come_from_the_credentials_files_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = vec![
            ("username", "app"),
            ("password", "tenant-pw"),
            ("database", "app"),
            ("monitor-username", "strata_monitor"),
            ("monitor-password", "monitor-pw"),
        ];
        write_credentials(dir.path(), &files);
        let roles = read_roles(dir.path()).unwrap();
        assert_eq!(roles.tenant, "app");
        assert_eq!(roles.monitor_password.expose(), "monitor-pw");
        files[3] = ("monitor-username", "postgres");
        write_credentials(dir.path(), &files);
        assert!(read_roles(dir.path()).is_err());
        std::fs::remove_file(dir.path().join("monitor-password")).unwrap();
        let err = read_roles(dir.path()).err().unwrap().to_string();
        assert!(err.contains("no monitor-password"), "{err}");
    }

    #[test]
    fn copy_self_writes_an_executable_copy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("strata");
        copy_self(&to).unwrap();
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), me);
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!dir.path().join("strata.tmp").exists());
    }
}
