//! The PostgreSQL server shared by the tests of one process.
//!
//! It is started on first use from the installed binaries, in a temporary
//! directory, listening on a free port of 127.0.0.1 (its unix socket stays in
//! that directory too). A test process has no hook that runs when it ends, so
//! the server runs under a small supervisor (a shell) that reads a pipe whose
//! write end only this process holds: when this process ends, however it
//! ends, the pipe closes, and the supervisor stops the server, reaps it, and
//! removes its directory.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use strata_runtime_local::{Installations, RunAs};

/// The major the fixture runs when it is installed (the one Strata deploys);
/// otherwise the newest installed one.
const PREFERRED_MAJOR: &str = "15";
const INITDB_TIMEOUT: Duration = Duration::from_mins(1);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
/// The role that owns the tests' databases: not a superuser, like the role a
/// production deployment gives Strata.
pub(crate) const OWNER: &str = "strata";
const SUPERUSER: &str = "postgres";

/// Runs the server as its child (so that it reaps it: no zombie outlives the
/// tests), prints its pid, and stops it once its stdin reaches end of file.
/// Immediate shutdown (SIGQUIT; PostgreSQL itself SIGKILLs its children
/// after 5 s): the data goes with the directory, so a checkpoint buys
/// nothing. Then it removes the directory, unless the line it read says
/// `keep` (a start that failed and is retried on another port). It ignores
/// the signals a terminal or a test runner sends to a whole process group.
const SUPERVISOR: &str = r#"trap '' INT TERM HUP
dir=$1
shift
"$@" >>"$dir/postgres.log" 2>&1 </dev/null &
pid=$!
echo "$pid"
read -r keep
kill -QUIT "$pid" 2>/dev/null
wait "$pid"
[ "$keep" = keep ] || rm -rf "$dir"
"#;

pub(crate) struct Server {
    pub(crate) pid: u32,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) password: String,
    /// Never written, never closed while this process lives: its end of file
    /// is the supervisor's signal.
    _supervisor_stdin: ChildStdin,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// A second address the server listens on, and the clients (a CIDR) it
/// accepts password logins from there: see [`crate::expose_server`].
struct Exposure {
    listen: std::net::Ipv4Addr,
    clients: String,
}

static EXPOSURE: OnceLock<Exposure> = OnceLock::new();

pub(crate) fn expose(listen: std::net::Ipv4Addr, clients: &str) {
    assert!(
        SERVER.get().is_none(),
        "strata_testpg::expose_server must be called before the server's first use"
    );
    let exposure = EXPOSURE.get_or_init(|| Exposure {
        listen,
        clients: clients.to_owned(),
    });
    assert!(
        exposure.listen == listen && exposure.clients == clients,
        "the test PostgreSQL server is already exposed on {} to {}",
        exposure.listen,
        exposure.clients
    );
}

/// The server of this process, started on first use. Panics, naming what
/// failed, when it cannot be started; every later call panics the same way.
pub(crate) fn shared() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!("the test PostgreSQL server did not start: {e}"),
    }
}

/// Removes the directory of a start that failed before the supervisor ran.
struct RemoveOnFailure(Option<PathBuf>);

impl Drop for RemoveOnFailure {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A server under its supervisor.
struct Supervised {
    supervisor: Child,
    stdin: ChildStdin,
    pid: u32,
}

impl Supervised {
    /// Stops the server; keeps the directory when `keep`. Bounded by
    /// PostgreSQL's own immediate shutdown.
    fn stop(self, keep: bool) -> Result<(), String> {
        let Self {
            mut supervisor,
            mut stdin,
            ..
        } = self;
        if keep {
            let _ = stdin.write_all(b"keep\n");
        }
        drop(stdin);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match supervisor.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() > deadline => {
                    let _ = supervisor.kill();
                    return Err("the server did not stop".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for the supervisor: {e}")),
            }
        }
    }
}

fn start() -> Result<Server, String> {
    let installs = Installations::discover(&[]);
    let newest = installs.majors().last().map(ToString::to_string);
    let bindir = installs
        .bindir(PREFERRED_MAJOR)
        .or_else(|| newest.as_deref().and_then(|m| installs.bindir(m)))
        .map(Path::to_path_buf)
        .ok_or(
            "no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin \
             or `pg_config --bindir`: apt-get install -y postgresql-15",
        )?;
    let run_as = RunAs::detect("postgres").map_err(|e| e.to_string())?;
    let base = tempfile::Builder::new()
        .prefix("strata-testpg-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?
        .keep();
    let mut remove = RemoveOnFailure(Some(base.clone()));
    prepare(&base, &run_as)?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    initdb(&bindir, &base, &run_as, &password)?;
    if let Some(exposure) = EXPOSURE.get() {
        allow_clients(&base.join("data/pg_hba.conf"), &exposure.clients)?;
    }

    let log = base.join("postgres.log");
    let mut last_error = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port()?;
        let server = supervise(&bindir, &base, &run_as, port)?;
        match wait_ready(&base.join("data"), server.pid) {
            Ok(()) => {
                // From here on the supervisor cleans up, whatever happens.
                remove.0 = None;
                let pid = server.pid;
                if let Err(e) = create_owner(&bindir, &base, port, &password) {
                    let _ = server.stop(false);
                    return Err(e);
                }
                return Ok(Server {
                    pid,
                    dir: base,
                    port,
                    password,
                    _supervisor_stdin: server.stdin,
                });
            }
            Err(Started::Exited) => {
                server.stop(true)?;
                let text = read_log(&log);
                if text.contains("could not bind") || text.contains("already in use") {
                    // Another process took the port between our probe and the bind.
                    last_error = text;
                    continue;
                }
                return Err(format!("postgres exited on start: {text}"));
            }
            Err(Started::TimedOut) => {
                server.stop(true)?;
                return Err(format!(
                    "postgres did not accept connections within {} s: {}",
                    START_TIMEOUT.as_secs(),
                    read_log(&log)
                ));
            }
        }
    }
    Err(format!(
        "postgres found no free port in {START_ATTEMPTS} attempts: {last_error}"
    ))
}

/// The directory layout: `base`, `base/data` and `base/run`, owned by the
/// PostgreSQL user with mode 0700 (it removes them in the end).
fn prepare(base: &Path, run_as: &RunAs) -> Result<(), String> {
    run_as
        .check_traversable(base.parent().unwrap_or(base))
        .map_err(|e| format!("{e} (set TMPDIR to a directory it can enter)"))?;
    for dir in [base.to_path_buf(), base.join("data"), base.join("run")] {
        run_as
            .own_dir(&dir, 0o700)
            .map_err(|e| format!("preparing {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn initdb(bindir: &Path, base: &Path, run_as: &RunAs, password: &str) -> Result<(), String> {
    let pwfile = base.join("pwfile");
    run_as
        .write_private(&pwfile, password.as_bytes())
        .map_err(|e| format!("writing the password file: {e}"))?;
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(base.join("data"))
        .args(["-U", SUPERUSER, "--auth=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--no-locale", "--no-sync"]);
    let result = run(
        cmd,
        Some(run_as),
        &base.join("initdb.log"),
        INITDB_TIMEOUT,
        "initdb",
    );
    let _ = std::fs::remove_file(&pwfile);
    result
}

/// Starts the supervisor, which starts `postgres` as its child.
fn supervise(bindir: &Path, base: &Path, run_as: &RunAs, port: u16) -> Result<Supervised, String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg("strata-testpg")
        .arg(base)
        .arg(bindir.join("postgres"))
        .arg("-D")
        .arg(base.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(match EXPOSURE.get() {
            Some(exposure) => format!("listen_addresses=127.0.0.1,{}", exposure.listen),
            None => "listen_addresses=127.0.0.1".to_owned(),
        })
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            base.join("run").display()
        ))
        // A throwaway server: durability buys nothing here.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir(base)
        .env_remove("PGDATA")
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8")
        // Its own process group: a Ctrl-C at the terminal is not its end.
        .process_group(0);
    if run_as.drop_privileges {
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
    let mut supervisor = cmd
        .spawn()
        .map_err(|e| format!("running sh to supervise postgres: {e}"))?;
    let (Some(stdin), Some(stdout)) = (supervisor.stdin.take(), supervisor.stdout.take()) else {
        return Err("the supervisor has no stdin or stdout".into());
    };
    // The first line is written at once; end of file means the shell failed.
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    if let Ok(pid) = line.trim().parse() {
        Ok(Supervised {
            supervisor,
            stdin,
            pid,
        })
    } else {
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        Err(format!("the supervisor did not start postgres: {line:?}"))
    }
}

enum Started {
    Exited,
    TimedOut,
}

/// Whether process `pid` has ended (gone, or a zombie its parent has yet to reap).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// Waits until `postmaster.pid` says the server accepts connections.
fn wait_ready(data: &Path, pid: u32) -> Result<(), Started> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ended(pid) {
            return Err(Started::Exited);
        }
        let ready = std::fs::read_to_string(data.join("postmaster.pid"))
            .is_ok_and(|pid_file| pid_file.lines().nth(7).map(str::trim) == Some("ready"));
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Started::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets `clients` (a CIDR) log in with a password, besides loopback.
fn allow_clients(hba: &Path, clients: &str) -> Result<(), String> {
    use std::io::Write;
    File::options()
        .append(true)
        .open(hba)
        .and_then(|mut f| writeln!(f, "host all all {clients} scram-sha-256"))
        .map_err(|e| format!("writing {}: {e}", hba.display()))
}

/// Creates the non-superuser role that owns the tests' databases.
fn create_owner(bindir: &Path, base: &Path, port: u16, password: &str) -> Result<(), String> {
    // The statement names the password: a private file, not an argument
    // that every user sees in the process list.
    let script = base.join("owner.sql");
    write_private(
        &script,
        &format!(
            "CREATE ROLE {OWNER} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE;\n"
        ),
    )?;
    let psql = bindir.join("psql");
    let mut cmd = Command::new(if psql.is_file() { psql } else { "psql".into() });
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", SUPERUSER, "-d", "postgres", "-f"])
        .arg(&script)
        .env("PGPASSWORD", password);
    let result = run(cmd, None, &base.join("psql.log"), PSQL_TIMEOUT, "psql");
    let _ = std::fs::remove_file(&script);
    result
}

/// Output to `log`, a clean environment, and the PostgreSQL user when this
/// process runs as root.
fn configure(
    cmd: &mut Command,
    run_as: Option<&RunAs>,
    base: &Path,
    log: &Path,
) -> Result<(), String> {
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .current_dir(base)
        .env_remove("PGDATA")
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8");
    if let Some(run_as) = run_as.filter(|r| r.drop_privileges) {
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
    Ok(())
}

/// Runs `cmd` to completion within `timeout`.
fn run(
    mut cmd: Command,
    run_as: Option<&RunAs>,
    log: &Path,
    timeout: Duration,
    what: &str,
) -> Result<(), String> {
    let base = log.parent().unwrap_or(Path::new("/"));
    configure(&mut cmd, run_as, base, log)?;
    let mut child = cmd.spawn().map_err(|e| format!("running {what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} failed ({status}): {}", read_log(log))),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} did not finish within {} s: {}",
                    timeout.as_secs(),
                    read_log(log)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// Writes a file only this process's user can read.
fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).map_or_else(
        |e| format!("(no log at {}: {e})", log.display()),
        |t| t.trim().to_owned(),
    )
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}
