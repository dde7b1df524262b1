//! `strata pod-agent` against a real PostgreSQL server: the credentials
//! directory is laid out the way the kubelet mounts a Secret (versioned
//! directories and a `..data` link swapped atomically), and a rotation is
//! checked over real password logins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use strata_runtime_local::{Installations, RunAs};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// How long any one wait may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// A child process stopped with `signal` (then killed) on drop.
struct Process {
    child: Child,
    signal: Signal,
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = kill(pid, self.signal);
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

fn as_postgres<'a>(cmd: &'a mut Command, run_as: &RunAs) -> &'a mut Command {
    if run_as.drop_privileges {
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes version `version` of a mounted Secret into `dir` and points
/// `..data` at it with an atomic rename, as the kubelet does.
fn mount_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let versioned = dir.join(version);
    std::fs::create_dir(&versioned).unwrap();
    for (key, value) in files {
        std::fs::write(versioned.join(key), value).unwrap();
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

/// Logs in as `app` with `password` over TCP (SCRAM).
async fn login(port: u16, password: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("app")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    Ok(())
}

fn refused(result: &Result<(), tokio_postgres::Error>) -> bool {
    matches!(result, Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Postgres {
    _process: Process,
    port: u16,
    socket: PathBuf,
}

/// initdb (superuser `app`, socket trusted, TCP by SCRAM) and a running
/// server on a free loopback port with its socket in `base/socket`.
async fn start_postgres(base: &Path, initial_password: &str) -> Postgres {
    let installs = Installations::discover(&[]);
    let major = installs
        .majors()
        .last()
        .copied()
        .expect("no PostgreSQL installed: apt-get install -y postgresql-15");
    let bindir = installs.bindir(&major.to_string()).unwrap().to_path_buf();
    let run_as = RunAs::detect("postgres").unwrap();
    let (data, socket) = (base.join("data"), base.join("socket"));
    for dir in [&data, &socket] {
        std::fs::create_dir(dir).unwrap();
        run_as.own_dir(dir, 0o700).unwrap();
    }
    let pwfile = base.join("pwfile");
    run_as
        .write_private(&pwfile, initial_password.as_bytes())
        .unwrap();
    let out = as_postgres(
        Command::new(bindir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "app",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display())),
        &run_as,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(base.join("postgres.log")).unwrap();
    let child = as_postgres(
        Command::new(bindir.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket.display()))
            .stdout(Stdio::null())
            .stderr(log),
        &run_as,
    )
    .spawn()
    .unwrap();
    let process = Process {
        child,
        signal: Signal::SIGINT,
    };
    eventually("PostgreSQL to accept connections", async || {
        login(port, initial_password).await.is_ok()
    })
    .await;
    Postgres {
        _process: process,
        port,
        socket,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_reaches_the_running_server_and_the_old_one_stops_working() {
    let base = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let pg = start_postgres(base.path(), "initdb-password").await;

    // The Secret as the kubelet mounts it: the first version.
    let creds = base.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    mount_version(
        &creds,
        "..2026_01_01_00_00_00.1",
        &[
            ("username", "app"),
            ("password", "first-password"),
            ("rotation", ""),
        ],
    );

    let log = std::fs::File::create(base.path().join("agent.log")).unwrap();
    let agent = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("pod-agent")
        .arg("--credentials-dir")
        .arg(&creds)
        .arg("--socket-dir")
        .arg(&pg.socket)
        .arg(format!("--port={}", pg.port))
        .args(["--interval-ms", "100", "--log-format", "json"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _agent = Process {
        child: agent,
        signal: Signal::SIGTERM,
    };

    // On start the agent gives the server the mounted password.
    eventually("the mounted password to work", async || {
        login(pg.port, "first-password").await.is_ok()
    })
    .await;
    assert!(refused(&login(pg.port, "initdb-password").await));

    // A rotation: the kubelet swaps `..data` to a new version.
    mount_version(
        &creds,
        "..2026_01_01_00_05_00.2",
        &[
            ("username", "app"),
            ("password", "second-password"),
            ("rotation", "r2"),
        ],
    );
    eventually("the rotated password to work", async || {
        login(pg.port, "second-password").await.is_ok()
    })
    .await;
    let old = login(pg.port, "first-password").await;
    assert!(refused(&old), "the old password still works: {old:?}");

    // Only a SCRAM verifier reached the server, never the plaintext.
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(&pg.socket)
        .port(pg.port)
        .user("app")
        .dbname("postgres")
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    assert!(!stored.contains("second-password"));
    let logged = std::fs::read_to_string(base.path().join("agent.log")).unwrap();
    assert!(!logged.contains("second-password"), "{logged}");
    assert!(logged.contains(r#""rotation":"r2""#), "{logged}");
}
