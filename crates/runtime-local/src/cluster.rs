//! Data directories for instances: one template cluster per installed major
//! (`initdb` once, with the prepared role and database made in it), and
//! copies of it that are clusters of their own — each with a fresh system
//! identifier and mock-authentication nonce, in its control file and in its
//! WAL.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::Duration;

use tokio::process::Command;

use crate::error::StepError;
use crate::server::{Server, wait_accepting};
use crate::{Inner, config, control, sql};

/// A file in a finished template naming its format; a template without it,
/// or of another format, is made again.
const TEMPLATE_MARKER: &str = "strata-template";
/// 3: with the prepared role and database, and one WAL segment.
const TEMPLATE_FORMAT: &str = "3";
/// How long the template's one start may take.
const TEMPLATE_START: Duration = Duration::from_mins(1);
const TEMPLATE_STOP_GRACE: Duration = Duration::from_secs(30);

/// Whether work is done for a create that waits on it, or ahead of time
/// for the pool: then its programs run with a lower CPU priority (`nice`),
/// so creates and API requests go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Urgency {
    Now,
    Background,
}

impl Inner {
    /// `program` with a clean environment, as the PostgreSQL user when
    /// `as_postgres` (and Strata runs as root), niced in the background.
    fn command(&self, program: &Path, urgency: Urgency, as_postgres: bool) -> Command {
        let mut cmd = match urgency {
            Urgency::Now => Command::new(program),
            Urgency::Background => {
                let mut c = Command::new("nice");
                c.args(["-n", "10"]).arg(program);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .kill_on_drop(true);
        if as_postgres && self.run_as.drop_privileges {
            cmd.uid(self.run_as.uid).gid(self.run_as.gid);
        }
        cmd
    }

    /// Runs `cmd` to its end; its error output explains a failure.
    async fn run(what: &str, mut cmd: Command) -> Result<(), StepError> {
        let out = cmd
            .output()
            .await
            .map_err(StepError::io(format!("running {what}")))?;
        if !out.status.success() {
            return Err(StepError::Program {
                program: what.to_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn bindir(&self, version: &str) -> Result<PathBuf, StepError> {
        self.installs
            .bindir(version)
            .map(Path::to_path_buf)
            .ok_or_else(|| StepError::state(format!("PostgreSQL {version} is not installed")))
    }

    /// The template cluster for `version`: made once (`initdb`, then one
    /// start to make the prepared role and database) and copied for each
    /// instance.
    pub(crate) async fn ensure_template(&self, version: &str) -> Result<PathBuf, StepError> {
        let lock = self
            .template_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(version.to_owned())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let templates = self.root.join("templates");
        let dir = templates.join(version);
        if std::fs::read_to_string(dir.join(TEMPLATE_MARKER))
            .is_ok_and(|format| format.trim() == TEMPLATE_FORMAT)
        {
            return Ok(dir);
        }
        let bindir = self.bindir(version)?;
        let io = StepError::io("preparing the template");
        let tmp = templates.join(format!("{version}.tmp"));
        let run = templates.join(format!("{version}.run"));
        let log = templates.join(format!("{version}.log"));
        for stale in [&tmp, &run] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(&io)?;
            }
        }
        self.run_as.own_dir(&tmp, 0o700).map_err(&io)?;
        let mut initdb = self.command(&bindir.join("initdb"), Urgency::Now, true);
        initdb
            .arg("-D")
            .arg(&tmp)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=reject"])
            .args(["-E", "UTF8", "--no-locale", "--no-sync"]);
        Self::run("initdb", initdb).await?;
        let conf = tmp.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(&io)?;
        text.push_str(
            "\n# Strata's settings for this instance.\ninclude_if_exists = 'strata.conf'\n",
        );
        std::fs::write(&conf, text).map_err(&io)?;

        // One start, on a private socket and no TCP port, to make the
        // prepared role and database here instead of in every instance.
        self.run_as.own_dir(&run, 0o700).map_err(&io)?;
        let settings = format!(
            "listen_addresses = ''\nport = 5432\nunix_socket_directories = {}\n",
            config::quote(&run.display().to_string())
        );
        let settings_file = tmp.join("strata.conf");
        self.run_as
            .write_private(&settings_file, settings.as_bytes())
            .map_err(&io)?;
        let mut server = Server::start(&bindir, &tmp, &log, self.run_as)
            .map_err(StepError::io("starting the template"))?;
        let made = async {
            let client =
                wait_accepting(&mut server, &tmp, &run, 5432, &log, TEMPLATE_START).await?;
            sql::prepare_role_and_database(&client)
                .await
                .map_err(StepError::sql(
                    "preparing the role and database of the template",
                ))
        }
        .await;
        server.stop(TEMPLATE_STOP_GRACE).await;
        made?;
        // One WAL segment, whose first page each copy re-keys in place.
        self.reset_wal(&bindir, &tmp, Urgency::Now).await?;
        std::fs::remove_file(&settings_file).map_err(&io)?;
        std::fs::remove_dir_all(&run).map_err(&io)?;
        let _ = std::fs::remove_file(&log);
        self.run_as
            .write_private(&tmp.join(TEMPLATE_MARKER), TEMPLATE_FORMAT.as_bytes())
            .map_err(&io)?;
        if dir.exists() {
            // A template of an earlier format.
            std::fs::remove_dir_all(&dir).map_err(&io)?;
        }
        std::fs::rename(&tmp, &dir).map_err(&io)?;
        Ok(dir)
    }

    /// A cluster of its own at `dest` (which must not exist): a copy of the
    /// template, re-keyed (fresh system identifier and mock-authentication
    /// nonce) in its control file and WAL.
    pub(crate) async fn prepare_cluster(
        &self,
        version: &str,
        dest: &Path,
        urgency: Urgency,
    ) -> Result<(), StepError> {
        let template = self.ensure_template(version).await?;
        let bindir = self.bindir(version)?;
        // Owners and modes are kept: the copy belongs to the PostgreSQL user.
        let mut copy = self.command(Path::new("cp"), urgency, false);
        // Instant on a filesystem that shares extents (btrfs, XFS).
        copy.args(["-a", "--reflink=auto"]).arg(&template).arg(dest);
        Self::run("copying the template", copy).await?;
        if rekey(dest)? {
            return Ok(());
        }
        self.reset_wal(&bindir, dest, urgency).await
    }

    /// `pg_resetwal -f`: the WAL of `data` replaced by one new segment that
    /// carries the identifier of its control file.
    async fn reset_wal(
        &self,
        bindir: &Path,
        data: &Path,
        urgency: Urgency,
    ) -> Result<(), StepError> {
        let mut reset = self.command(&bindir.join("pg_resetwal"), urgency, true);
        reset.arg("-f").arg("-D").arg(data);
        Self::run("pg_resetwal", reset).await
    }
}

/// Gives the cluster in `data` a fresh system identifier and nonce from
/// the operating system's CSPRNG (owners and modes stay): in its control
/// file, and in the first page of each WAL segment. `false` when a segment
/// does not record the old identifier where expected: then the caller
/// replaces the WAL (`pg_resetwal`).
fn rekey(data: &Path) -> Result<bool, StepError> {
    use rand::RngCore;
    use std::io::{Read, Seek, Write};
    let io = StepError::io(format!("re-keying {}", data.display()));
    let control_file = data.join("global").join("pg_control");
    let mut bytes = std::fs::read(&control_file).map_err(&io)?;
    let old = control::system_identifier(&bytes)
        .ok_or_else(|| StepError::state("pg_control is too short"))?;
    let mut nonce = [0u8; control::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let now = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .unsigned_abs();
    let new = control::new_system_identifier(now, rand::rngs::OsRng.next_u32());
    control::rekey(&mut bytes, new, &nonce).map_err(StepError::other("re-keying pg_control"))?;
    let mut every_segment = true;
    let mut segments = 0;
    for entry in std::fs::read_dir(data.join("pg_wal")).map_err(&io)? {
        let entry = entry.map_err(&io)?;
        let name = entry.file_name();
        let is_segment = name.len() == 24
            && name
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
            && entry.file_type().map_err(&io)?.is_file();
        if !is_segment {
            continue;
        }
        segments += 1;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(entry.path())
            .map_err(&io)?;
        let mut header = [0u8; control::WAL_SYSID_AT + 8];
        file.read_exact(&mut header).map_err(&io)?;
        if control::rekey_wal_header(&mut header, old, new) {
            file.seek(std::io::SeekFrom::Start(0)).map_err(&io)?;
            file.write_all(&header).map_err(&io)?;
        } else {
            every_segment = false;
        }
    }
    std::fs::write(&control_file, bytes).map_err(&io)?;
    Ok(every_segment && segments > 0)
}
