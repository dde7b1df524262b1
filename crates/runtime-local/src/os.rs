//! The operating-system side: which user PostgreSQL runs as, ownership and
//! modes of its directories, processes.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

/// The account PostgreSQL server processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Strata itself runs as root and must drop to `uid`/`gid` for PostgreSQL,
    /// which refuses to run as root.
    pub drop_privileges: bool,
}

/// The effective user of this process, read without `unsafe`.
fn effective_uid() -> io::Result<u32> {
    Ok(std::fs::metadata("/proc/self")?.uid())
}

impl RunAs {
    /// When Strata runs as root: the system user `postgres`; otherwise Strata's own user.
    pub fn detect(postgres_user: &str) -> io::Result<Self> {
        let euid = effective_uid()?;
        if euid != 0 {
            let gid = std::fs::metadata("/proc/self")?.gid();
            return Ok(Self {
                uid: euid,
                gid,
                drop_privileges: false,
            });
        }
        let user = User::from_name(postgres_user)
            .map_err(io::Error::other)?
            .ok_or_else(|| {
                io::Error::other(format!(
                    "Strata runs as root, and PostgreSQL refuses to; the system user {postgres_user:?} \
                     to run it as does not exist (install the postgresql package, or run Strata as an \
                     unprivileged user)"
                ))
            })?;
        Ok(Self {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            drop_privileges: true,
        })
    }

    /// Makes `path` a directory owned by the PostgreSQL user with `mode`.
    pub fn own_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        self.own(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    /// Gives `path` to the PostgreSQL user (when Strata runs as root).
    pub fn own(&self, path: &Path) -> io::Result<()> {
        if self.drop_privileges {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }

    /// Writes a file only the PostgreSQL user can read.
    pub fn write_private(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        std::fs::write(path, contents)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        self.own(path)
    }

    /// Fails with a clear message when the PostgreSQL user cannot reach `dir`
    /// because a parent directory is closed to it.
    pub fn check_traversable(&self, dir: &Path) -> io::Result<()> {
        if !self.drop_privileges {
            return Ok(());
        }
        let mut current = PathBuf::new();
        for part in dir.components() {
            current.push(part);
            let meta = std::fs::metadata(&current)?;
            let mode = meta.mode();
            let can = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !can {
                return Err(io::Error::other(format!(
                    "PostgreSQL runs as uid {} and cannot enter {}; choose a data directory \
                     outside it (for example /var/lib/strata)",
                    self.uid,
                    current.display()
                )));
            }
        }
        Ok(())
    }
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

pub fn signal(pid: i32, sig: Signal) -> bool {
    kill(Pid::from_raw(pid), sig).is_ok()
}

/// The postmaster recorded in `data/postmaster.pid`, when it still runs and
/// serves that data directory.
pub fn running_postmaster(data: &Path) -> Option<i32> {
    let content = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = content.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let recorded_dir = lines.next()?.trim();
    if !alive(pid) {
        return None;
    }
    // The pid may have been reused: check the process really is postgres on this directory.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let canonical = std::fs::canonicalize(data).ok()?;
    let is_postgres = cmdline.contains("postgres");
    let same_dir = Path::new(recorded_dir) == canonical || Path::new(recorded_dir) == data;
    (is_postgres && same_dir).then_some(pid)
}

/// Bytes the files under `dir` take on disk (blocks actually allocated).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}
