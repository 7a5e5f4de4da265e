//! Who is asking: the client address a request came from (login
//! throttling, and the sessions `GET /api/sessions/` lists) and its user
//! agent. This is the one place that reads `X-Forwarded-For`.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use portcullis_core::Client;

use crate::AppState;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare
/// address is its own /32 or /128. One `TRUSTED_PROXIES` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `address` is in the block. An IPv4-mapped IPv6 address is
    /// compared as the IPv4 address it is.
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let network =
            canonical(address.trim().parse::<IpAddr>().map_err(|_| {
                format!("{s:?} is not an address or a CIDR block such as 10.0.0.0/8")
            })?);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
/// Write `ip` as its `Display` writes it, the IPv4 case by hand:
/// `Ipv4Addr`'s `Display` goes through the formatter's padding for each
/// octet, which was a tenth of the proxy's own work per request and half
/// of an access-log line. Used by both (`X-Forwarded-For`, `remote=`).
///
/// # Errors
/// Only what `out` returns.
pub fn write_ip(out: &mut impl fmt::Write, ip: IpAddr) -> fmt::Result {
    let IpAddr::V4(v4) = ip else {
        return write!(out, "{ip}");
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.write_char('.')?;
        }
        if octet >= 100 {
            out.write_char(char::from(b'0' + octet / 100))?;
        }
        if octet >= 10 {
            out.write_char(char::from(b'0' + octet / 10 % 10))?;
        }
        out.write_char(char::from(b'0' + octet % 10))?;
    }
    Ok(())
}

/// The client address of a request: the TCP peer, unless the peer is a
/// trusted proxy, in which case `X-Forwarded-For` is read from the right
/// (each proxy appends the address it saw) and the first address that is
/// not a trusted proxy is the client. An unparsable entry stops the walk
/// at the last trusted hop, so a client cannot choose its own address by
/// writing one in the header: only what trusted proxies appended counts.
#[must_use]
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[Cidr],
) -> Option<IpAddr> {
    let mut client = canonical(peer?.ip());
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|c| c.contains(ip));
    if !trusted(client) {
        return Some(client);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !trusted(client) {
            break;
        }
    }
    Some(client)
}

/// Extractor: the request's [`client_address`] under `TRUSTED_PROXIES`;
/// `None` when the server was not started with connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        Ok(Self(client_address(
            peer,
            &parts.headers,
            &state.http().trusted_proxies,
        )))
    }
}

/// Extractor: the client a session records at login and refresh: its
/// [`client_address`] (also what login throttling counts) and
/// `User-Agent`, as a [`portcullis_core::Client`].
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The request's [`client_address`] under `TRUSTED_PROXIES`.
    pub address: Option<IpAddr>,
    /// What the session records.
    pub client: Client,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let ClientAddr(address) = ClientAddr::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        // `write_ip`, not `to_string`: every refresh and login pays this.
        let text = address.map(|ip| {
            let mut text = String::with_capacity(15);
            write_ip(&mut text, ip).ok();
            text
        });
        Ok(Self {
            address,
            client: Client::new(text, user_agent.as_deref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.199.255",
            "9.99.100.101",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            write_ip(&mut out, ip).unwrap();
            assert_eq!(out, ip.to_string());
        }
        // Every octet value in every position (the digit counts and the
        // zeros are where a hand-written formatter goes wrong).
        for position in 0..4 {
            for value in 0..=255u8 {
                let mut octets = [1, 22, 233, 4];
                octets[position] = value;
                let ip = IpAddr::from(octets);
                let mut out = String::new();
                write_ip(&mut out, ip).unwrap();
                assert_eq!(out, ip.to_string());
            }
        }
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[allow(clippy::unnecessary_wraps)] // shaped as client_address takes it
    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 4000))
    }

    #[allow(clippy::unnecessary_wraps)] // shaped as client_address returns it
    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(peer("198.51.100.1"), &h, &[]),
            ip("198.51.100.1")
        );
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(peer("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn trusted_peer_hands_over_to_the_rightmost_untrusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8", "fd00::/8"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
        let h = headers(&["2001:db8::5"]);
        assert_eq!(
            client_address(peer("fd00::1"), &h, &trusted),
            ip("2001:db8::5")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, not-an-ip, 10.0.0.8"]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &h, &trusted),
            ip("10.0.0.8")
        );
        assert_eq!(
            client_address(peer("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let trusted = cidrs(&["127.0.0.1"]);
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(peer("::ffff:127.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!(
            !"10.0.0.0/8"
                .parse::<Cidr>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }
}
