//! PostgreSQL major versions. Which ones are offered depends on what the
//! runtime can run (installed binaries, images); the rules live here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;

/// Majors that PostgreSQL itself has stopped supporting or will soon.
const DEPRECATED: &[u32] = &[12, 13];

/// A PostgreSQL major version on offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    /// The major version (`"16"`).
    pub version: String,
    /// Chosen when a request names no version.
    pub default: bool,
    /// Still offered, but new instances should pick a newer major.
    pub deprecated: bool,
}

/// The versions a runtime offers; the newest non-deprecated one is the default.
#[derive(Debug, Clone)]
pub struct VersionCatalog {
    versions: Vec<Version>,
}

impl VersionCatalog {
    pub fn from_majors(mut majors: Vec<u32>) -> Self {
        majors.sort_unstable();
        majors.dedup();
        let default = majors
            .iter()
            .rev()
            .find(|m| !DEPRECATED.contains(m))
            .or(majors.last())
            .copied();
        Self {
            versions: majors
                .into_iter()
                .rev()
                .map(|m| Version {
                    version: m.to_string(),
                    default: Some(m) == default,
                    deprecated: DEPRECATED.contains(&m),
                })
                .collect(),
        }
    }

    pub fn all(&self) -> &[Version] {
        &self.versions
    }

    pub fn default_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.default)
    }

    pub fn get(&self, version: &str) -> Result<&Version, ValidationError> {
        self.versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                ValidationError::field(
                    "",
                    format!(
                        "unsupported version {version:?}; offered: {}",
                        self.versions
                            .iter()
                            .map(|v| v.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_supported_major_is_default() {
        let c = VersionCatalog::from_majors(vec![13, 16, 15]);
        assert_eq!(c.default_version().unwrap().version, "16");
        assert!(c.get("13").unwrap().deprecated);
        assert!(c.get("14").is_err());
        assert_eq!(c.all()[0].version, "16");
    }

    #[test]
    fn deprecated_only_still_has_a_default() {
        let c = VersionCatalog::from_majors(vec![13]);
        assert_eq!(c.default_version().unwrap().version, "13");
    }
}
