//! `strata pod-agent`: the credentials agent that runs beside PostgreSQL in
//! an instance's pod. `strata pod-postgres` sets the tenant's password when
//! the server starts; a rotation while it runs is the agent's. The agent
//! watches the credentials Secret mounted as a volume (the kubelet swaps its
//! `..data` link atomically when the Secret changes), sets the role's
//! password over the pod's Unix socket as the superuser `postgres` (peer
//! authentication: the agent runs as the same OS user as the server) — as a
//! SCRAM verifier computed here, so the plaintext never reaches PostgreSQL —
//! and reports the rotation it applied as the annotation
//! `strata.dev/applied-rotation` on the Secret, through the API server, with
//! the pod's own service account (allowed to read and patch that one Secret).
//! It also reloads the server when the mounted TLS certificate or the
//! mounted configuration (pg_hba.conf, postgresql.conf) changes, so that an
//! ACL change never restarts the server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use strata_core::Secret;
use strata_kube::build::APPLIED_ROTATION_ANNOTATION;
use strata_kube::k8s_openapi::api::core::v1::Secret as KubeSecret;
use strata_kube::kube::api::{Patch, PatchParams};
use strata_kube::kube::{Api, Client};
use strata_runtime_local::sql;
use tracing::{info, warn};

use crate::serve::{init_logging, shutdown_signal};

#[derive(Args, Debug)]
pub struct PodAgentArgs {
    /// The mounted credentials Secret: files `username`, `password` and
    /// (optionally) `rotation`.
    #[arg(long, env = "STRATA_CREDENTIALS_DIR")]
    credentials_dir: PathBuf,
    /// The mounted TLS Secret (`tls.crt`, `tls.key`): the server reloads its
    /// configuration when they change.
    #[arg(long, env = "STRATA_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// The mounted ConfigMap (`pg_hba.conf`, `postgresql.conf`): the server
    /// reloads its configuration when they change.
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// The role the agent connects as over the socket (peer authentication).
    #[arg(long, default_value = "postgres")]
    superuser: String,
    /// PostgreSQL's Unix socket directory.
    #[arg(long, default_value = "/var/run/postgresql")]
    socket_dir: PathBuf,
    /// PostgreSQL's port (names the socket file).
    #[arg(long, default_value_t = 5432)]
    port: u16,
    /// Report the applied rotation on this Secret in `--namespace`, through
    /// the in-cluster API; no report when omitted.
    #[arg(long)]
    report_secret: Option<String>,
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// How often the mounted files are read, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval_ms: u64,
    /// Log format: json or text.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

/// The credentials as one consistent version of the mounted Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    pub rotation: String,
}

/// Reads `keys` of a mounted Secret or ConfigMap volume. The kubelet writes
/// each version into a fresh directory and swaps the `..data` link to it;
/// reading through the link target once gives files of one version. A plain
/// directory (no `..data`) is read as it is.
pub fn read_volume(dir: &Path, keys: &[&str]) -> std::io::Result<BTreeMap<String, String>> {
    let base = match std::fs::read_link(dir.join("..data")) {
        Ok(target) => dir.join(target),
        Err(_) => dir.to_path_buf(),
    };
    let mut files = BTreeMap::new();
    for key in keys {
        match std::fs::read_to_string(base.join(key)) {
            Ok(text) => {
                files.insert((*key).to_owned(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(files)
}

/// The credentials in a mounted credentials Secret.
pub fn read_credentials(dir: &Path) -> anyhow::Result<Credentials> {
    let mut files = read_volume(dir, &["username", "password", "rotation"])?;
    let mut take = |key: &str| files.remove(key).filter(|v| !v.is_empty());
    let username = take("username").context("the credentials hold no username")?;
    let password = take("password").context("the credentials hold no password")?;
    Ok(Credentials {
        username,
        password: Secret::new(password),
        rotation: take("rotation").unwrap_or_default(),
    })
}

/// What the agent has done so far.
#[derive(Debug, Default)]
pub struct State {
    /// The password the server was last given.
    applied: Option<Secret>,
    /// The rotation last reported to the API server.
    reported: Option<String>,
    /// The TLS and configuration files the server last (re)loaded.
    loaded: Option<String>,
}

/// What to do this round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub set_password: bool,
    pub reload: bool,
    pub report: Option<String>,
}

/// Decides what the server and the API server need, given what was done.
/// Pure: the loop does the I/O.
/// `files` are the contents of the watched TLS and configuration files.
pub fn plan(state: &State, creds: &Credentials, files: Option<&str>, reporting: bool) -> Plan {
    let set_password = state.applied.as_ref() != Some(&creds.password);
    Plan {
        set_password,
        reload: files.is_some_and(|t| state.loaded.as_deref() != Some(t)),
        // Report once the password is in place, and once per rotation.
        report: (reporting && state.reported.as_deref() != Some(creds.rotation.as_str()))
            .then(|| creds.rotation.clone()),
    }
}

struct Agent {
    args: PodAgentArgs,
    kube: Option<(Api<KubeSecret>, String)>,
    state: State,
}

impl Agent {
    /// The contents of the watched TLS and configuration files, as one
    /// string (`None` when nothing is watched).
    fn watched_files(&self) -> anyhow::Result<Option<String>> {
        let mut watched: Option<String> = None;
        for (dir, keys) in [
            (&self.args.tls_dir, &["tls.crt", "tls.key"][..]),
            (
                &self.args.config_dir,
                &["pg_hba.conf", "postgresql.conf"][..],
            ),
        ] {
            if let Some(dir) = dir {
                let files = read_volume(dir, keys)?;
                let text = watched.get_or_insert_with(String::new);
                for (key, content) in files {
                    text.push_str(&key);
                    text.push('\0');
                    text.push_str(&content);
                    text.push('\0');
                }
            }
        }
        Ok(watched)
    }

    /// One round: read the files, apply what changed. Errors are for the
    /// next round to retry (the server may not be up yet).
    async fn round(&mut self) -> anyhow::Result<()> {
        let creds = read_credentials(&self.args.credentials_dir)?;
        let watched = self.watched_files()?;
        let plan = plan(&self.state, &creds, watched.as_deref(), self.kube.is_some());
        if !plan.set_password && !plan.reload && plan.report.is_none() {
            return Ok(());
        }
        if plan.set_password || plan.reload {
            let client =
                sql::connect_as(&self.args.socket_dir, self.args.port, &self.args.superuser)
                    .await
                    .context("connecting to PostgreSQL over its Unix socket")?;
            client
                .batch_execute(strata_runtime_local::pod::QUIET_SESSION)
                .await
                .context("preparing the session")?;
            if plan.set_password {
                sql::set_password(&client, &creds.username, &creds.password)
                    .await
                    .context("setting the password")?;
                info!(role = %creds.username, rotation = %creds.rotation, "the server uses the password of the credentials Secret");
                self.state.applied = Some(creds.password.clone());
                self.state.reported = None;
            }
            if plan.reload {
                let loaded_at = |row: tokio_postgres::Row| row.get::<_, std::time::SystemTime>(0);
                let before = loaded_at(client.query_one("SELECT pg_conf_load_time()", &[]).await?);
                client
                    .batch_execute("SELECT pg_reload_conf()")
                    .await
                    .context("reloading the server's configuration")?;
                drop(client);
                // The server reads the files when it handles the reload,
                // not when they were read here: if they changed in between,
                // it holds a newer version than `watched`, and a later change
                // back to `watched` would look like nothing. So wait until a
                // new session shows the reload done, and read the files again:
                // the server holds at most what they say then.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                let handled = loop {
                    let session = sql::connect_as(
                        &self.args.socket_dir,
                        self.args.port,
                        &self.args.superuser,
                    )
                    .await
                    .context("connecting after the reload")?;
                    if loaded_at(session.query_one("SELECT pg_conf_load_time()", &[]).await?)
                        > before
                    {
                        break true;
                    }
                    if tokio::time::Instant::now() > deadline {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                let now = self.watched_files()?;
                info!("the server reloaded its configuration and certificate");
                self.state.loaded = if handled && now == watched {
                    watched
                } else {
                    None
                };
            }
        }
        if let (Some(rotation), Some((api, name))) = (plan.report, &self.kube) {
            let patch = serde_json::json!({
                "metadata": { "annotations": { APPLIED_ROTATION_ANNOTATION: rotation } }
            });
            let params = PatchParams {
                field_manager: Some("strata-pod-agent".into()),
                ..PatchParams::default()
            };
            api.patch(name, &params, &Patch::Merge(&patch))
                .await
                .context("reporting the applied rotation")?;
            info!(secret = %name, %rotation, "reported the applied rotation");
            self.state.reported = Some(rotation);
        }
        Ok(())
    }
}

pub async fn run(args: PodAgentArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let kube = match &args.report_secret {
        Some(name) => {
            let namespace = args
                .namespace
                .clone()
                .context("--report-secret needs --namespace (or $POD_NAMESPACE)")?;
            let client = Client::try_default()
                .await
                .context("a Kubernetes client for the report")?;
            Some((Api::namespaced(client, &namespace), name.clone()))
        }
        None => None,
    };
    let interval = Duration::from_millis(args.interval_ms);
    let mut agent = Agent {
        args,
        kube,
        state: State::default(),
    };
    info!(dir = %agent.args.credentials_dir.display(), "credentials agent watching the mounted Secret");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut last_error = String::new();
    loop {
        match agent.round().await {
            Ok(()) => last_error.clear(),
            Err(e) => {
                // Say it once, not every round, while nothing changes.
                let text = format!("{e:#}");
                if text != last_error {
                    warn!(error = %text, "will retry");
                    last_error = text;
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn creds(password: &str, rotation: &str) -> Credentials {
        Credentials {
            username: "app".into(),
            password: Secret::new(password),
            rotation: rotation.into(),
        }
    }

    #[test]
    fn a_new_password_is_set_then_reported_once() {
        let mut state = State::default();
        let first = plan(&state, &creds("a", "r1"), None, true);
        assert_eq!(
            first,
            Plan {
                set_password: true,
                reload: false,
                report: Some("r1".into())
            }
        );
        state.applied = Some(Secret::new("a"));
        state.reported = Some("r1".into());
        assert_eq!(plan(&state, &creds("a", "r1"), None, true), Plan::default());
        let rotated = plan(&state, &creds("b", "r2"), None, true);
        assert!(rotated.set_password);
        assert_eq!(rotated.report.as_deref(), Some("r2"));
        // Without a report target, nothing is reported.
        assert_eq!(plan(&state, &creds("b", "r2"), None, false).report, None);
    }

    #[test]
    fn changed_certificate_files_reload_the_server() {
        let mut state = State {
            applied: Some(Secret::new("a")),
            reported: Some(String::new()),
            loaded: None,
        };
        assert!(plan(&state, &creds("a", ""), Some("v1"), true).reload);
        state.loaded = Some("v1".into());
        assert!(!plan(&state, &creds("a", ""), Some("v1"), true).reload);
        assert!(plan(&state, &creds("a", ""), Some("v2"), true).reload);
    }

    #[test]
    fn a_mounted_secret_is_read_through_its_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (version, password) in [("..v1", "one"), ("..v2", "two")] {
            std::fs::create_dir(d.join(version)).unwrap();
            std::fs::write(d.join(version).join("username"), "app").unwrap();
            std::fs::write(d.join(version).join("password"), password).unwrap();
        }
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        for key in ["username", "password"] {
            std::os::unix::fs::symlink(format!("..data/{key}"), d.join(key)).unwrap();
        }
        let c = read_credentials(d).unwrap();
        assert_eq!(c.password.expose(), "one");
        assert_eq!(c.rotation, "");
        std::os::unix::fs::symlink("..v2", d.join("..data.tmp")).unwrap();
        std::fs::rename(d.join("..data.tmp"), d.join("..data")).unwrap();
        assert_eq!(read_credentials(d).unwrap().password.expose(), "two");

        let empty = tempfile::tempdir().unwrap();
        let err = read_credentials(empty.path()).unwrap_err();
        assert!(err.to_string().contains("no username"), "{err}");
    }
}
