//! Access control lists: the client networks allowed to reach an instance.

use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Errors, ValidationError};

/// At most this many entries per instance.
pub const ACL_MAX: usize = 64;

/// A normalised, de-duplicated list of CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Acl(Vec<IpNet>);

impl Acl {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses
    /// (taken as /32 or /128). Errors name the entry (`[1]`).
    pub fn parse(entries: &[String]) -> Result<Self, ValidationError> {
        let mut errors = Errors::default();
        if entries.len() > ACL_MAX {
            errors.push("", format!("at most {ACL_MAX} entries"));
        }
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let parsed = IpNet::from_str(entry)
                .or_else(|_| std::net::IpAddr::from_str(entry).map(IpNet::from));
            match parsed {
                Ok(net) if net.trunc() == net => nets.push(net),
                Ok(net) => errors.push(
                    format!("[{i}]"),
                    format!("{entry:?} has host bits set; did you mean {}?", net.trunc()),
                ),
                Err(_) => errors.push(
                    format!("[{i}]"),
                    format!("{entry:?} is not a CIDR block such as 10.0.0.0/8"),
                ),
            }
        }
        errors.finish()?;
        nets.sort();
        nets.dedup();
        Ok(Self(nets))
    }

    /// Everyone (still needs TLS and the password).
    pub fn open() -> Self {
        Self(vec![
            IpNet::from_str("0.0.0.0/0").unwrap_or_default(),
            IpNet::from_str("::/0").unwrap_or_default(),
        ])
    }

    pub fn entries(&self) -> &[IpNet] {
        &self.0
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn parses_and_normalises() {
        let acl = Acl::parse(&s(&["10.0.0.0/8", "192.168.1.7", "10.0.0.0/8", "::1"])).unwrap();
        assert_eq!(
            acl.to_strings(),
            vec!["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
        );
    }

    #[test]
    fn names_each_bad_entry() {
        let err = Acl::parse(&s(&["10.0.0.0/8", "nope", "10.0.0.1/8", "300.1.1.1/8"])).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["[1]", "[2]", "[3]"]);
        assert!(err.errors[1].message.contains("10.0.0.0/8"));
    }

    #[test]
    fn open_covers_both_families() {
        assert_eq!(Acl::open().to_strings(), vec!["0.0.0.0/0", "::/0"]);
    }
}
