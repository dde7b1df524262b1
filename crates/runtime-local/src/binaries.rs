//! The PostgreSQL server binaries installed on this machine, one set per major.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where each installed major's `initdb` and `postgres` live.
#[derive(Debug, Clone, Default)]
pub struct Installations {
    by_major: BTreeMap<u32, PathBuf>,
}

pub(crate) fn major_of(bindir: &Path) -> Option<u32> {
    let out = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

impl Installations {
    /// Finds installations in `extra` directories, Debian's
    /// `/usr/lib/postgresql/*/bin`, and `pg_config --bindir`.
    pub fn discover(extra: &[PathBuf]) -> Self {
        let mut candidates: Vec<PathBuf> = extra.to_vec();
        if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut dirs: Vec<_> = entries.flatten().map(|e| e.path().join("bin")).collect();
            dirs.sort();
            candidates.extend(dirs);
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let mut by_major = BTreeMap::new();
        for dir in candidates {
            if dir.join("postgres").is_file()
                && dir.join("initdb").is_file()
                && let Some(major) = major_of(&dir)
            {
                by_major.entry(major).or_insert(dir);
            }
        }
        Self { by_major }
    }

    pub fn majors(&self) -> Vec<u32> {
        self.by_major.keys().copied().collect()
    }

    pub fn bindir(&self, version: &str) -> Option<&Path> {
        let major: u32 = version.parse().ok()?;
        self.by_major.get(&major).map(PathBuf::as_path)
    }
}
