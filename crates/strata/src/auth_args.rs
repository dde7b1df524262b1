//! Flags that shape authentication, shared by `strata serve` and `strata api`:
//! the external OpenID Connect issuer, the limits of sign-in attempts and
//! the reverse proxies trusted to name the client's address.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_api::auth::Auth;
use strata_api::oidc::{OidcConfig, OidcVerifier, RoleMapping};
use strata_api::proxy::{IpNet, TrustedProxies};
use strata_api::ratelimit::{LoginLimits, Quota};
use strata_store::Store;

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// Also accept tokens of this OpenID Connect issuer (its `iss`, e.g.
    /// https://id.example.com/realms/main); needs --oidc-audience.
    #[arg(long, env = "STRATA_OIDC_ISSUER", requires = "oidc_audience")]
    oidc_issuer: Option<String>,
    /// The audience (`aud`) external tokens must carry, usually the client id.
    #[arg(long, env = "STRATA_OIDC_AUDIENCE", requires = "oidc_issuer")]
    oidc_audience: Option<String>,
    /// Claim that names the user.
    #[arg(
        long,
        env = "STRATA_OIDC_USERNAME_CLAIM",
        default_value = "preferred_username"
    )]
    oidc_username_claim: String,
    /// Claim that lists the user's groups.
    #[arg(long, env = "STRATA_OIDC_GROUPS_CLAIM", default_value = "groups")]
    oidc_groups_claim: String,
    /// Prefix of the Strata user names of external users.
    #[arg(long, env = "STRATA_OIDC_USERNAME_PREFIX", default_value = "oidc-")]
    oidc_username_prefix: String,
    /// GROUP=admin or GROUP=PROJECT:ROLE: what members of a group may do
    /// (repeatable; comma-separated in the environment variable).
    #[arg(
        long = "oidc-role-mapping",
        env = "STRATA_OIDC_ROLE_MAPPINGS",
        value_delimiter = ','
    )]
    oidc_role_mappings: Vec<RoleMapping>,
    /// Requests to /v1/auth/token and /v1/auth/refresh per minute from one address.
    #[arg(long, env = "STRATA_LOGIN_ATTEMPTS_PER_ADDRESS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    login_attempts_per_address: u32,
    /// Failed sign-ins per user name in 15 minutes.
    #[arg(long, env = "STRATA_LOGIN_FAILURES_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    login_failures_per_user: u32,
    /// A reverse proxy (CIDR or address) whose X-Forwarded-For names the
    /// client — for the sign-in limits and the audit log's source address
    /// (repeatable; comma-separated in the environment variable) [default:
    /// none, the TCP peer is the client].
    #[arg(
        long = "trusted-proxy",
        env = "STRATA_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = strata_api::proxy::parse_cidr,
        value_name = "CIDR"
    )]
    trusted_proxies: Vec<IpNet>,
}

impl AuthArgs {
    /// The proxies `--trusted-proxy` names.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        if !self.trusted_proxies.is_empty() {
            let nets: Vec<String> = self
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::info!(proxies = %nets.join(","), "X-Forwarded-For is believed from these proxies");
        }
        TrustedProxies::new(self.trusted_proxies.iter().copied())
    }

    /// The issuer's keys from the store, with the external issuer and
    /// limits these flags ask for.
    pub async fn load(&self, store: &Store, issuer: String) -> anyhow::Result<Auth> {
        let auth = Auth::load(store, issuer)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let oidc = match (&self.oidc_issuer, &self.oidc_audience) {
            (Some(issuer), Some(audience)) => {
                let mut config = OidcConfig::new(issuer, audience);
                config.username_claim.clone_from(&self.oidc_username_claim);
                config.groups_claim.clone_from(&self.oidc_groups_claim);
                config
                    .username_prefix
                    .clone_from(&self.oidc_username_prefix);
                config.mappings.clone_from(&self.oidc_role_mappings);
                tracing::info!(issuer = %config.issuer, audience = %config.audience, mappings = config.mappings.len(), "accepting tokens of an external OpenID Connect issuer");
                Some(OidcVerifier::new(config).context("--oidc-issuer")?)
            }
            _ => None,
        };
        Ok(auth.with_oidc(oidc).with_login_limits(LoginLimits {
            per_address: Quota::new(self.login_attempts_per_address, Duration::from_mins(1)),
            per_user: Quota::new(self.login_failures_per_user, Duration::from_mins(15)),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    fn parse(flags: &[&str]) -> Result<AuthArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("strata").chain(flags.iter().copied())).map(|c| c.auth)
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses_and_repeatable() {
        let args = parse(&[
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy=192.0.2.10,fd00::/8",
        ])
        .unwrap();
        let nets: Vec<String> = args
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.10/32", "fd00::/8"]);
        assert!(parse(&[]).unwrap().trusted_proxies().is_empty());
        let bad = parse(&["--trusted-proxy", "ingress.local"])
            .err()
            .unwrap()
            .to_string();
        assert!(bad.contains("not an address or CIDR"), "{bad}");
    }
}
