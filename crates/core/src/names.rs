//! Validated names. A name that exists as one of these types has been checked.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

const DNS_LABEL_MAX: usize = 63;
/// Instance names are shorter than a DNS label so that derived names
/// (Kubernetes objects, roles) still fit.
pub const INSTANCE_NAME_MAX: usize = 40;

/// The regular expression matching exactly the names [`check_dns_label`]
/// accepts with this `max` (stated in the OpenAPI document; a test holds the
/// two together).
pub fn dns_label_pattern(max: usize) -> String {
    format!("^[a-z]([a-z0-9-]{{0,{}}}[a-z0-9])?$", max.saturating_sub(2))
}

fn check_dns_label(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    let bytes = value.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter".into());
    }
    if !bytes[bytes.len() - 1].is_ascii_lowercase() && !bytes[bytes.len() - 1].is_ascii_digit() {
        return Err("must end with a lowercase letter or a digit".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "must contain only lowercase letters, digits and '-' (found {c:?})"
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest name of this kind.
            pub const MAX_LEN: usize = $max;

            /// The regular expression a name of this kind matches.
            pub fn pattern() -> String {
                dns_label_pattern($max)
            }

            /// Checks `value` against the naming rules; the error names no field.
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                check_dns_label(value, $max)
                    .map(|()| Self(value.to_owned()))
                    .map_err(|m| ValidationError::field("", m))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                check_dns_label(&value, $max).map(|()| Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A project name: a DNS label, unique and immutable.
    ProjectName,
    DNS_LABEL_MAX
);
name_type!(
    /// An instance name: a DNS label of at most 40 characters, unique in its project.
    InstanceName,
    INSTANCE_NAME_MAX
);
name_type!(
    /// A user name: a DNS label.
    Username,
    DNS_LABEL_MAX
);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every string over a few characters up to `len`, and long ones around the limits.
    pub(crate) fn candidates(alphabet: &[char], len: usize, long: &[usize]) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        for &n in long {
            all.push("a".repeat(n));
            all.push(format!("{}-", "a".repeat(n - 1)));
            all.push(format!("{}9", "a".repeat(n - 1)));
        }
        all
    }

    #[test]
    fn the_documented_pattern_accepts_exactly_what_parse_accepts() {
        let strings = candidates(
            &['a', 'Z', '0', '-', '_', '.', 'é'],
            3,
            &[39, 40, 41, 62, 63, 64],
        );
        for (pattern, parse) in [
            (
                ProjectName::pattern(),
                (|s: &str| ProjectName::parse(s).is_ok()) as fn(&str) -> bool,
            ),
            (InstanceName::pattern(), |s| InstanceName::parse(s).is_ok()),
            (Username::pattern(), |s| Username::parse(s).is_ok()),
        ] {
            let re = regex::Regex::new(&pattern).unwrap();
            for s in &strings {
                assert_eq!(re.is_match(s), parse(s), "{pattern} on {s:?}");
            }
        }
    }

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "orders", "orders-2", "a1", &"a".repeat(40)] {
            assert!(InstanceName::parse(ok).is_ok(), "{ok}");
        }
        assert!(ProjectName::parse(&"p".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_what_is_not_a_dns_label() {
        for bad in [
            "",
            "Orders",
            "1orders",
            "-orders",
            "orders-",
            "or_ders",
            "or.ders",
            "ördérs",
            &"a".repeat(41),
        ] {
            assert!(InstanceName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ProjectName::parse(&"p".repeat(64)).is_err());
    }

    #[test]
    fn serde_enforces_the_rules() {
        assert!(serde_json::from_str::<InstanceName>("\"Bad\"").is_err());
        let n: InstanceName = serde_json::from_str("\"good\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.as_str(), "good");
    }
}
