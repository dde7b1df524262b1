//! One PostgreSQL server process: started by Strata, or adopted from an
//! earlier Strata process that ended while the server kept running.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use crate::error::StepError;
use crate::os::{self, RunAs};

pub enum Server {
    Child(Child),
    Adopted(i32),
}

/// Why a server stopped or failed to start.
#[derive(Debug, Clone)]
pub struct ExitReason(pub String);

impl Server {
    /// Starts `postgres -D data`, its output appended to `log`.
    pub fn start(bindir: &Path, data: &Path, log: &Path, run_as: RunAs) -> std::io::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut cmd = Command::new(bindir.join("postgres"));
        cmd.arg("-D")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .kill_on_drop(false)
            // Its own process group: a Ctrl-C at Strata's terminal is Strata's to handle.
            .process_group(0);
        if run_as.drop_privileges {
            cmd.uid(run_as.uid).gid(run_as.gid);
        }
        Ok(Self::Child(cmd.spawn()?))
    }

    pub fn adopt(pid: i32) -> Self {
        Self::Adopted(pid)
    }

    pub fn pid(&self) -> Option<i32> {
        match self {
            Self::Child(c) => c.id().and_then(|p| i32::try_from(p).ok()),
            Self::Adopted(p) => Some(*p),
        }
    }

    /// Resolves when the process has ended.
    pub async fn exited(&mut self) -> ExitReason {
        match self {
            Self::Child(c) => match c.wait().await {
                Ok(status) => ExitReason(describe(status)),
                Err(e) => ExitReason(format!("lost track of the process: {e}")),
            },
            Self::Adopted(pid) => {
                while os::alive(*pid) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                ExitReason("exited".into())
            }
        }
    }

    /// Whether the process has already ended (without waiting).
    pub fn has_exited(&mut self) -> Option<ExitReason> {
        match self {
            Self::Child(c) => match c.try_wait() {
                Ok(Some(status)) => Some(ExitReason(describe(status))),
                Ok(None) => None,
                Err(e) => Some(ExitReason(e.to_string())),
            },
            Self::Adopted(pid) => (!os::alive(*pid)).then(|| ExitReason("exited".into())),
        }
    }

    /// Re-reads configuration files (SIGHUP).
    pub fn reload(&self) -> bool {
        self.pid().is_some_and(|p| os::signal(p, Signal::SIGHUP))
    }

    /// Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit);
    /// immediate shutdown (SIGQUIT) after `grace`; SIGKILL as the last resort.
    pub async fn stop(mut self, grace: Duration) {
        let Some(pid) = self.pid() else { return };
        for (sig, wait) in [
            (Signal::SIGINT, grace),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if !os::signal(pid, sig) {
                break;
            }
            if tokio::time::timeout(wait, self.exited()).await.is_ok() {
                return;
            }
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            Signal::try_from(sig)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        _ => "exited".into(),
    }
}

/// Stops whatever server runs on `data`, ours or not.
pub async fn stop_any(data: &Path, grace: Duration) {
    if let Some(pid) = os::running_postmaster(data) {
        Server::adopt(pid).stop(grace).await;
    }
}

/// The last lines of a server log, to explain a failure.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Whether the postmaster of `data` says that it accepts connections:
/// PostgreSQL writes `ready` into the eighth line of `postmaster.pid` then.
fn says_ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .is_ok_and(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
}

/// How often the server itself is asked even when its pid file does not
/// say `ready` (a file that cannot be read, an unusual build).
const ASK_ANYWAY: Duration = Duration::from_millis(100);

/// Polls until the server of `data` accepts connections on its socket, it
/// exits, or the deadline passes; returns the first connection (as the
/// superuser). The pid file is read every 2 ms and the server asked when it
/// says `ready`: a connection attempt while the server starts would fork a
/// backend only to be refused.
pub async fn wait_accepting(
    server: &mut Server,
    data: &Path,
    socket_dir: &Path,
    port: u16,
    log: &Path,
    deadline: Duration,
) -> Result<tokio_postgres::Client, StepError> {
    let start = Instant::now();
    let mut asked = start;
    loop {
        if let Some(reason) = server.has_exited() {
            return Err(StepError::state(format!(
                "PostgreSQL {}: {}",
                reason.0,
                log_tail(log, 3)
            )));
        }
        if says_ready(data) || asked.elapsed() >= ASK_ANYWAY {
            asked = Instant::now();
            if let Ok(client) = crate::sql::connect(socket_dir, port).await {
                return Ok(client);
            }
        }
        if start.elapsed() > deadline {
            return Err(StepError::state(format!(
                "PostgreSQL did not accept connections within {}s: {}",
                deadline.as_secs(),
                log_tail(log, 3)
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
