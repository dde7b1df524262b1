//! PostgreSQL inside an instance's Kubernetes pod (`strata pod-postgres`):
//! which server binaries to run, whether the data directory needs `initdb`,
//! and the SQL that makes the tenant's and the monitoring role. Everything
//! here but the small file and process look-ups is pure; the binary does
//! the process handling.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use crate::sql::ident;

/// The bootstrap superuser: it connects over the pod's Unix socket by peer
/// authentication only (pg_hba.conf never admits it over TCP).
pub const SUPERUSER: &str = "postgres";

/// What can stop the pod's server from starting.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(
        "no PostgreSQL {major} server binaries (postgres and initdb) found; looked in: {looked}"
    )]
    NoBinaries { major: u32, looked: String },
    #[error(
        "the data directory {dir} holds PostgreSQL {found} data, but this pod runs PostgreSQL {want}: \
         a major version change needs pg_upgrade, which is not done in place; \
         run the image of version {found}, or restore the data into a new instance"
    )]
    OtherMajor {
        dir: PathBuf,
        found: String,
        want: u32,
    },
    #[error(
        "{dir} is neither empty nor a PostgreSQL data directory (it has no PG_VERSION); \
         refusing to initialise over its files"
    )]
    NotADataDir { dir: PathBuf },
    #[error("role name {name:?} cannot be used: {why}")]
    BadRoleName { name: String, why: &'static str },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PodError + '_ {
    move |source| PodError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where to look for the server binaries of `major`, in order: the
/// directories of `PATH` (the official images put the server's bindir
/// there), `pg_config --bindir`, then Debian's `/usr/lib/postgresql/<major>/bin`.
pub fn bindir_candidates(
    path_var: Option<&OsStr>,
    pg_config_bindir: Option<PathBuf>,
    major: u32,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path_var
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    out.extend(pg_config_bindir);
    out.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| !d.as_os_str().is_empty() && seen.insert(d.clone()));
    out
}

/// The first candidate that holds `postgres` and `initdb` of `major`.
/// `version_of` tells the major of a directory's `postgres`.
pub fn choose_bindir(
    candidates: &[PathBuf],
    major: u32,
    version_of: impl Fn(&Path) -> Option<u32>,
) -> Result<PathBuf, PodError> {
    candidates
        .iter()
        .find(|dir| {
            dir.join("postgres").is_file()
                && dir.join("initdb").is_file()
                && version_of(dir) == Some(major)
        })
        .cloned()
        .ok_or_else(|| PodError::NoBinaries {
            major,
            looked: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Finds the server binaries of `major` on this machine (see
/// [`bindir_candidates`]).
pub fn find_bindir(major: u32) -> Result<PathBuf, PodError> {
    let path_var = std::env::var_os("PATH");
    let pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let candidates = bindir_candidates(path_var.as_deref(), pg_config, major);
    choose_bindir(&candidates, major, crate::binaries::major_of)
}

/// What the data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Missing, or an empty directory: a new instance.
    Empty,
    /// A cluster of this major version (`PG_VERSION`).
    Cluster { major: String },
    /// Files, but no `PG_VERSION`.
    Foreign,
}

/// Reads what `dir` holds.
pub fn inspect_data_dir(dir: &Path) -> Result<DataDir, PodError> {
    match std::fs::read_to_string(dir.join("PG_VERSION")) {
        Ok(version) => {
            return Ok(DataDir::Cluster {
                major: version.trim().to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(if entries.next().is_none() {
            DataDir::Empty
        } else {
            DataDir::Foreign
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DataDir::Empty),
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// How the server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `initdb` first.
    Initialise,
    /// Start on the existing cluster.
    Existing,
}

/// Decides how to start on `dir`, which holds `found`, with binaries of `want`.
pub fn start_plan(dir: &Path, found: &DataDir, want: u32) -> Result<Start, PodError> {
    match found {
        DataDir::Empty => Ok(Start::Initialise),
        DataDir::Cluster { major } if major.parse::<u32>().ok() == Some(want) => {
            Ok(Start::Existing)
        }
        DataDir::Cluster { major } => Err(PodError::OtherMajor {
            dir: dir.to_path_buf(),
            found: major.clone(),
            want,
        }),
        DataDir::Foreign => Err(PodError::NotADataDir {
            dir: dir.to_path_buf(),
        }),
    }
}

/// `initdb`'s arguments: the superuser `postgres` reached over the Unix
/// socket by peer authentication, SCRAM for TCP (pg_hba.conf from the
/// ConfigMap replaces initdb's own at start anyway), UTF-8 with C collation
/// (stable across C library upgrades, so indexes never need a rebuild for
/// it), and page checksums.
pub fn initdb_args(data: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-D".into(), data.as_os_str().to_owned()];
    args.extend(
        [
            "-U",
            SUPERUSER,
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--data-checksums",
        ]
        .map(OsString::from),
    );
    args
}

/// Where `initdb` writes before the cluster is moved into place: a crash
/// half-way leaves no half-made `dir` behind.
pub fn initdb_staging(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".initdb");
    dir.with_file_name(name)
}

/// Checks the tenant's and the monitoring role's names: PostgreSQL
/// identifiers that are neither the superuser, a predefined role nor each other.
pub fn check_role_names(tenant: &str, monitor: &str) -> Result<(), PodError> {
    for name in [tenant, monitor] {
        let bad = |why| PodError::BadRoleName {
            name: name.to_owned(),
            why,
        };
        if name.is_empty() || name.len() > 63 {
            return Err(bad("it must have 1 to 63 bytes"));
        }
        if name.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        if name == SUPERUSER {
            return Err(bad("it is the superuser"));
        }
        if name.starts_with("pg_") {
            return Err(bad("names starting with pg_ are reserved"));
        }
    }
    if tenant == monitor {
        return Err(PodError::BadRoleName {
            name: tenant.to_owned(),
            why: "the tenant and the monitoring role must differ",
        });
    }
    Ok(())
}

/// Run first in the session that sets passwords: the server logs neither
/// the statements nor, when one fails, its text (a SCRAM verifier is no
/// password, but it has no place in a log either).
pub const QUIET_SESSION: &str = "SET log_statement = 'none'; SET log_min_error_statement = 'panic'; SET log_min_duration_statement = -1";

fn role_statement(role: &str, exists: bool, attributes: &str, verifier: &str) -> String {
    let verb = if exists { "ALTER" } else { "CREATE" };
    format!(
        "{verb} ROLE {} {attributes} PASSWORD '{}'",
        ident(role),
        verifier.replace('\'', "''")
    )
}

/// The tenant's role: it logs in and owns its database, nothing more —
/// no superuser (no `COPY … TO PROGRAM`, no `ALTER SYSTEM`), no role or
/// database creation, no replication, no bypassing row security.
pub fn tenant_role(role: &str, exists: bool, verifier: &str) -> String {
    role_statement(
        role,
        exists,
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT -1",
        verifier,
    )
}

/// The tenant's database, owned by the tenant; other roles (the monitoring
/// role among them) may not connect to it.
pub fn tenant_database(database: &str, role: &str, exists: bool) -> Vec<String> {
    let (db, owner) = (ident(database), ident(role));
    let mut out = Vec::new();
    if exists {
        out.push(format!("ALTER DATABASE {db} OWNER TO {owner}"));
    } else {
        out.push(format!("CREATE DATABASE {db} OWNER {owner}"));
    }
    out.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
    out
}

/// Run in the tenant's database: the tenant owns its `public` schema (when
/// it has not dropped it).
pub fn public_schema_owner(role: &str) -> String {
    format!(
        "DO $strata$ BEGIN \
           IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') THEN \
             ALTER SCHEMA public OWNER TO {}; \
           END IF; \
         END $strata$",
        ident(role)
    )
}

/// The monitoring role of the metrics exporter: it logs in (a few
/// connections at most) and reads statistics through `pg_monitor`.
pub fn monitor_role(role: &str, exists: bool, verifier: &str) -> Vec<String> {
    vec![
        role_statement(
            role,
            exists,
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT 3",
            verifier,
        ),
        format!("GRANT pg_monitor TO {}", ident(role)),
    ]
}

/// The memberships each role may hold; any other one is revoked.
pub fn allowed_memberships(role: &str, monitor: &str) -> &'static [&'static str] {
    if role == monitor {
        &["pg_monitor"]
    } else {
        &[]
    }
}

/// Revokes `role`'s membership in `of`.
pub fn revoke_membership(of: &str, role: &str) -> String {
    format!("REVOKE {} FROM {}", ident(of), ident(role))
}

/// Whether the exporter's metrics say it reached the database
/// (`pg_up 1`, with or without labels).
pub fn exporter_up(metrics: &str) -> bool {
    metrics.lines().any(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return false;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        if &line[..name_end] != "pg_up" {
            return false;
        }
        // The value follows the labels (if any); a timestamp may follow it.
        let rest = match line[name_end..].find('}') {
            Some(close) if line[name_end..].starts_with('{') => &line[name_end + close + 1..],
            _ => &line[name_end..],
        };
        rest.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| (v - 1.0).abs() < f64::EPSILON)
    })
}

/// The exit status the supervisor passes on for the server's: its code,
/// or 128 + the signal that ended it (as a shell reports it).
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binaries_are_searched_on_path_then_pg_config_then_debian() {
        let path = OsString::from("/usr/local/bin:/usr/lib/postgresql/17/bin::/usr/local/bin");
        let c = bindir_candidates(
            Some(&path),
            Some(PathBuf::from("/usr/lib/postgresql/17/bin")),
            17,
        );
        assert_eq!(
            c,
            [
                PathBuf::from("/usr/local/bin"),
                PathBuf::from("/usr/lib/postgresql/17/bin"),
            ]
        );
        let c = bindir_candidates(None, None, 15);
        assert_eq!(c, [PathBuf::from("/usr/lib/postgresql/15/bin")]);
    }

    #[test]
    fn a_bindir_of_another_major_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let (v16, v17) = (dir.path().join("16"), dir.path().join("17"));
        for d in [&v16, &v17] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("postgres"), "").unwrap();
            std::fs::write(d.join("initdb"), "").unwrap();
        }
        let version = |d: &Path| d.file_name()?.to_str()?.parse().ok();
        let both = [v16.clone(), v17.clone()];
        assert_eq!(choose_bindir(&both, 17, version).unwrap(), v17);
        assert_eq!(choose_bindir(&both, 16, version).unwrap(), v16);
        let err = choose_bindir(&both, 15, version).unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL 15") && err.contains("/16"),
            "{err}"
        );
    }

    #[test]
    fn the_data_directory_decides_initdb_or_start_and_refuses_other_majors() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pgdata");
        assert_eq!(inspect_data_dir(&data).unwrap(), DataDir::Empty);
        std::fs::create_dir(&data).unwrap();
        assert_eq!(inspect_data_dir(&data).unwrap(), DataDir::Empty);
        assert_eq!(
            start_plan(&data, &DataDir::Empty, 16).unwrap(),
            Start::Initialise
        );
        std::fs::write(data.join("lost+found"), "").unwrap();
        assert_eq!(inspect_data_dir(&data).unwrap(), DataDir::Foreign);
        let err = start_plan(&data, &DataDir::Foreign, 16).unwrap_err();
        assert!(err.to_string().contains("no PG_VERSION"), "{err}");
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        let found = inspect_data_dir(&data).unwrap();
        assert_eq!(found, DataDir::Cluster { major: "15".into() });
        assert_eq!(start_plan(&data, &found, 15).unwrap(), Start::Existing);
        let err = start_plan(&data, &found, 16).unwrap_err().to_string();
        assert!(
            err.contains("PostgreSQL 15 data") && err.contains("runs PostgreSQL 16"),
            "{err}"
        );
    }

    #[test]
    fn initdb_makes_a_peer_only_superuser_and_stages_beside_the_data_dir() {
        let args = initdb_args(Path::new("/var/lib/postgresql/data/pgdata"));
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        for expected in [
            "-U",
            "postgres",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
        ] {
            assert!(args.contains(&expected), "{expected} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("pwfile")), "{args:?}");
        assert_eq!(
            initdb_staging(Path::new("/var/lib/postgresql/data/pgdata")),
            Path::new("/var/lib/postgresql/data/pgdata.initdb")
        );
    }

    #[test]
    fn reserved_role_names_are_refused() {
        check_role_names("app", "strata_monitor").unwrap();
        for (tenant, monitor) in [
            ("postgres", "strata_monitor"),
            ("app", "postgres"),
            ("pg_monitor", "strata_monitor"),
            ("app", "app"),
            ("", "strata_monitor"),
        ] {
            assert!(
                check_role_names(tenant, monitor).is_err(),
                "{tenant}/{monitor}"
            );
        }
    }

    #[test]
    fn the_tenant_role_is_no_superuser_and_owns_its_database() {
        let create = tenant_role("app", false, "SCRAM-SHA-256$4096:x");
        assert!(
            create.starts_with("CREATE ROLE \"app\" LOGIN NOSUPERUSER "),
            "{create}"
        );
        for attr in ["NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS", "NOCREATEDB"] {
            assert!(create.contains(attr), "{attr} in {create}");
        }
        assert!(
            create.ends_with("PASSWORD 'SCRAM-SHA-256$4096:x'"),
            "{create}"
        );
        assert!(tenant_role("app", true, "v").starts_with("ALTER ROLE \"app\" "));
        // Quoting: a hostile name stays one identifier.
        let odd = tenant_role("a\"; DROP ROLE x; --", false, "v");
        assert!(
            odd.starts_with("CREATE ROLE \"a\"\"; DROP ROLE x; --\" LOGIN"),
            "{odd}"
        );

        assert_eq!(
            tenant_database("app", "app", false),
            [
                "CREATE DATABASE \"app\" OWNER \"app\"",
                "REVOKE ALL ON DATABASE \"app\" FROM PUBLIC"
            ]
        );
        assert_eq!(
            tenant_database("app", "app", true)[0],
            "ALTER DATABASE \"app\" OWNER TO \"app\""
        );
        assert!(public_schema_owner("app").contains("ALTER SCHEMA public OWNER TO \"app\""));
    }

    #[test]
    fn the_monitoring_role_only_gets_pg_monitor() {
        let sql = monitor_role("strata_monitor", false, "v");
        assert!(sql[0].starts_with("CREATE ROLE \"strata_monitor\" LOGIN NOSUPERUSER"));
        assert!(sql[0].contains("CONNECTION LIMIT 3"), "{}", sql[0]);
        assert_eq!(sql[1], "GRANT pg_monitor TO \"strata_monitor\"");
        assert_eq!(
            allowed_memberships("strata_monitor", "strata_monitor"),
            ["pg_monitor"]
        );
        assert!(allowed_memberships("app", "strata_monitor").is_empty());
        assert_eq!(
            revoke_membership("pg_execute_server_program", "app"),
            "REVOKE \"pg_execute_server_program\" FROM \"app\""
        );
    }

    #[test]
    fn pg_up_is_read_from_the_exporters_metrics() {
        let up =
            "# HELP pg_up Whether the last scrape could connect.\n# TYPE pg_up gauge\npg_up 1\n";
        assert!(exporter_up(up));
        assert!(!exporter_up("# TYPE pg_up gauge\npg_up 0\n"));
        assert!(exporter_up(
            "pg_up{server=\"127.0.0.1:5432\"} 1 1700000000000\n"
        ));
        assert!(!exporter_up("pg_up{server=\"x\"} 0\n"));
        assert!(!exporter_up("pg_upstream 1\n"));
        assert!(!exporter_up(""));
    }

    #[test]
    fn the_servers_status_is_passed_on() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(1 << 8)), 1);
        // Killed by SIGKILL (9).
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }
}
