//! Whose address a request comes from when reverse proxies stand in front
//! of Strata. The TCP peer is the client unless it is a proxy Strata was
//! told to trust (`--trusted-proxy CIDR`); only then is `X-Forwarded-For`
//! read, from the right, skipping the trusted proxies that appended to it.
//! A client can put anything into the header it sends, so the left-most
//! entries prove nothing; the right-most one a trusted proxy wrote is the
//! address that proxy saw.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
pub use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose `X-Forwarded-For` is believed. Empty: none.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (`10.0.0.7`).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    IpNet::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not an address or CIDR (e.g. 10.0.0.0/8)"))
}

impl TrustedProxies {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy; then
    /// the right-most `X-Forwarded-For` entry that is not a trusted proxy
    /// itself (the left-most entry when all are). An entry that is not an
    /// address stops the walk: what lies left of it is not believed.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop_address(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An entry of `X-Forwarded-For`: an address, perhaps with a port.
fn hop_address(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop)
        .ok()
        .or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4 addresses a dual-stack socket reports as `::ffff:a.b.c.d` are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_cidr(n).unwrap()))
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_trusted() {
        let spoofed = headers(&["203.0.113.9"]);
        assert_eq!(
            TrustedProxies::default().client(ip("192.0.2.1"), &spoofed),
            ip("192.0.2.1")
        );
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client(ip("192.0.2.1"), &spoofed), ip("192.0.2.1"));
        assert_eq!(p.client(ip("10.1.2.3"), &spoofed), ip("203.0.113.9"));
        // A trusted proxy that forwarded nothing is the client.
        assert_eq!(p.client(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"]);
        // The client claims to be 1.1.1.1; the edge proxy saw 198.51.100.7;
        // an inner proxy 10.0.0.2 forwarded to the peer 10.0.0.3.
        let h = headers(&["1.1.1.1, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(p.client(ip("10.0.0.3"), &h), ip("198.51.100.7"));
        // Every entry a trusted proxy: the left-most one.
        let h = headers(&["10.9.9.9, fd00::1"]);
        assert_eq!(p.client(ip("10.0.0.3"), &h), ip("10.9.9.9"));
        // Garbage stops the walk at the last address believed.
        let h = headers(&["198.51.100.7, unknown, 10.0.0.2"]);
        assert_eq!(p.client(ip("10.0.0.3"), &h), ip("10.0.0.2"));
        // Ports and IPv6 forms are understood.
        let h = headers(&["[2001:db8::5]:4711", "198.51.100.8:80"]);
        assert_eq!(p.client(ip("10.0.0.3"), &h), ip("198.51.100.8"));
        let h = headers(&["2001:db8::5"]);
        assert_eq!(p.client(ip("::ffff:10.0.0.3"), &h), ip("2001:db8::5"));
    }

    #[test]
    fn cidrs_and_single_addresses_parse() {
        assert_eq!(parse_cidr("10.0.0.7").unwrap().to_string(), "10.0.0.7/32");
        assert_eq!(
            parse_cidr(" 10.1.2.3/8 ").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("proxy.example").is_err());
    }
}
