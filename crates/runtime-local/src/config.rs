//! PostgreSQL configuration rendered from an instance's spec. Pure functions.

use std::fmt::Write as _;
use std::path::Path;

use strata_core::{Acl, Plan};

/// Settings that change with the spec or the runtime's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub port: u16,
    pub listen: String,
    pub socket_dir: String,
    pub settings: Vec<(&'static str, String)>,
}

impl ServerConfig {
    pub fn new(plan: &Plan, port: u16, listen: &str, socket_dir: &Path) -> Self {
        Self {
            port,
            listen: listen.to_owned(),
            socket_dir: socket_dir.display().to_string(),
            settings: plan.postgres_settings(),
        }
    }

    /// `strata.conf`, included from `postgresql.conf`.
    pub fn render(&self) -> String {
        let mut out = String::from("# Written by Strata; changes are overwritten.\n");
        let fixed = [
            ("listen_addresses", quote(&self.listen)),
            ("port", self.port.to_string()),
            ("unix_socket_directories", quote(&self.socket_dir)),
            ("unix_socket_permissions", "0700".into()),
            ("ssl", "on".into()),
            ("ssl_cert_file", quote("server.crt")),
            ("ssl_key_file", quote("server.key")),
            ("ssl_min_protocol_version", quote("TLSv1.2")),
            ("password_encryption", quote("scram-sha-256")),
            ("log_destination", quote("stderr")),
            ("logging_collector", "off".into()),
            ("log_line_prefix", quote("%m [%p] %q%u@%d ")),
            ("log_connections", "off".into()),
            ("dynamic_shared_memory_type", "posix".into()),
        ];
        for (k, v) in fixed {
            let _ = writeln!(out, "{k} = {v}");
        }
        for (k, v) in &self.settings {
            let _ = writeln!(out, "{k} = {}", quote(v));
        }
        out
    }

    /// Whether going from `self` to `next` needs a restart rather than a reload.
    pub fn needs_restart(&self, next: &ServerConfig) -> bool {
        if self.port != next.port || self.listen != next.listen {
            return true;
        }
        Plan::RESTART_SETTINGS.iter().any(|name| {
            let get = |c: &ServerConfig| {
                c.settings
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            get(self) != get(next)
        })
    }
}

pub(crate) fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `pg_hba.conf`: the superuser over the private socket only; the
/// application role over TLS with SCRAM from the ACL's networks; nothing else.
pub fn render_hba(database: &str, role: &str, acl: &Acl) -> String {
    let mut out = String::from(
        "# Written by Strata; changes are overwritten.\n\
         # The socket directory is private to the server's OS user.\n\
         local all postgres trust\n",
    );
    for net in acl.entries() {
        let _ = writeln!(out, "hostssl \"{database}\" \"{role}\" {net} scram-sha-256");
    }
    out
}

/// Where quota stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaState {
    Within,
    /// 90 % or more used.
    Near,
    Over,
}

pub fn quota_state(used_bytes: u64, quota_gb: u32) -> QuotaState {
    let quota = u64::from(quota_gb) * 1024 * 1024 * 1024;
    if used_bytes >= quota {
        QuotaState::Over
    } else if used_bytes * 10 >= quota * 9 {
        QuotaState::Near
    } else {
        QuotaState::Within
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::PlanCatalog;

    #[test]
    fn renders_plan_and_placement() {
        let plans = PlanCatalog::default();
        let c = ServerConfig::new(
            plans.get("small").unwrap(),
            15433,
            "127.0.0.1",
            Path::new("/x/run"),
        );
        let text = c.render();
        assert!(text.contains("port = 15433\n"));
        assert!(text.contains("shared_buffers = '256MB'\n"));
        assert!(text.contains("unix_socket_directories = '/x/run'\n"));
        assert!(text.contains("ssl = on\n"));
    }

    #[test]
    fn restart_only_when_needed() {
        let plans = PlanCatalog::default();
        let small = ServerConfig::new(plans.get("small").unwrap(), 1, "127.0.0.1", Path::new("/r"));
        let medium = ServerConfig::new(
            plans.get("medium").unwrap(),
            1,
            "127.0.0.1",
            Path::new("/r"),
        );
        assert!(small.needs_restart(&medium));
        assert!(!small.needs_restart(&small.clone()));
    }

    #[test]
    fn hba_follows_the_acl() {
        let acl = Acl::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let hba = render_hba("orders", "orders", &acl);
        assert!(hba.contains("hostssl \"orders\" \"orders\" 10.0.0.0/8 scram-sha-256"));
        assert!(hba.contains("hostssl \"orders\" \"orders\" ::1/128 scram-sha-256"));
        assert!(!hba.contains("0.0.0.0/0"));
    }

    #[test]
    fn quota_thresholds() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(quota_state(gib / 2, 1), QuotaState::Within);
        assert_eq!(quota_state(gib * 95 / 100, 1), QuotaState::Near);
        assert_eq!(quota_state(gib, 1), QuotaState::Over);
    }
}
