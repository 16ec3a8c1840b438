//! The client's address, behind trusted reverse proxies.
//!
//! A request's peer is the TCP connection's other end. Only when that peer is one of the
//! operator's `trusted_proxies` (CIDR ranges) does Parley read the forwarding header the
//! proxies write (`forwarded_header`: `X-Forwarded-For`, the default, or RFC 7239
//! `Forwarded`; the other one is ignored, since a proxy passes through whichever it does not
//! write). The client is then the right-most address in that header that is not itself a
//! trusted proxy: every entry to its right was appended by a proxy the operator trusts, every
//! entry to its left came from the client and may be forged. An entry that is not an address
//! (`unknown`, an obfuscated `_node`, garbage) ends the walk at the hop to its right.
//!
//! [`layer`] resolves the address once per request and leaves a [`ClientAddr`] in the
//! request's extensions; every handler takes it from there ([`ClientIp`]), so GeoIP, the
//! widget's per-visitor limit, the sign-in limit and the request log agree.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use forwarded_header_value::{ForwardedStanza, Identifier};
use ipnet::IpNet;
use serde::Deserialize;

use crate::AppState;

/// The peers whose forwarding headers are believed (default: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR ranges (`10.0.0.0/8`, `fd00::/8`) or single addresses (`127.0.0.1`).
    /// Errors: the first entry that is neither, quoted.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("trusted_proxies: {e:?} is not an address or CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` lies in one of the ranges (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, as configured.
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

/// Which forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, Caddy, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The resolved client of a request (in the request's extensions, see [`layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: the peer, or the one the trusted proxies forwarded.
    pub ip: IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Request-Id` is believed too).
    pub via_trusted_proxy: bool,
}

/// The client's address for a request from `peer` with `headers` (see the module docs).
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    which: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let name = match which {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    // Several header lines form one list, in order (RFC 9110 section 5.3).
    let elements: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut client = peer;
    for element in elements.iter().rev() {
        let hop = match which {
            ForwardedHeader::XForwardedFor => element.parse::<Identifier>().ok(),
            ForwardedHeader::Forwarded => element
                .parse::<ForwardedStanza>()
                .ok()
                .and_then(|s| s.forwarded_for),
        };
        let Some(ip) = hop.as_ref().and_then(Identifier::ip) else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

/// Whether an incoming `X-Request-Id` may be kept: 1 to 128 characters of letters, digits and
/// `-`, `_`, `.`, `:` (so it is safe in a log line and a header).
pub fn well_formed_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Middleware (outermost): resolves the client address into a [`ClientAddr`] extension, and
/// drops an incoming `X-Request-Id` unless a trusted proxy sent it and it is well formed (the
/// request-id layer then makes a fresh one).
pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let trusted = &st.settings.trusted_proxies;
        let via_trusted_proxy = trusted.contains(peer.ip());
        let ip = client_ip(
            peer.ip(),
            req.headers(),
            trusted,
            st.settings.forwarded_header,
        );
        req.extensions_mut().insert(ClientAddr {
            ip,
            via_trusted_proxy,
        });
        let keep = via_trusted_proxy
            && req
                .headers()
                .get(REQUEST_ID)
                .is_some_and(|v| well_formed_request_id(v.as_bytes()));
        if !keep {
            req.headers_mut().remove(REQUEST_ID);
        }
    } else {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

/// The client address of a request (an extractor that never fails; `None` when the server
/// runs without connection info).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let resolved = parts.extensions.get::<ClientAddr>().map(|c| c.ip);
        Ok(ClientIp(resolved.or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip().to_canonical())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let got = client_ip(
            ip("198.51.100.7"),
            &h,
            &trusted,
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got, ip("198.51.100.7"));
        let none = TrustedProxies::default();
        let got = client_ip(ip("10.0.0.1"), &h, &none, ForwardedHeader::XForwardedFor);
        assert_eq!(got, ip("10.0.0.1"), "no proxy is trusted by default");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1"]).unwrap();
        // The client forged "1.1.1.1"; proxies appended the real client and each other.
        let h = headers(
            "x-forwarded-for",
            &["1.1.1.1, 203.0.113.9", "192.0.2.1, 10.1.2.3"],
        );
        let got = client_ip(ip("10.9.9.9"), &h, &trusted, ForwardedHeader::XForwardedFor);
        assert_eq!(got, ip("203.0.113.9"));
        // Every hop trusted: the left-most one.
        let h = headers("x-forwarded-for", &["10.0.0.5"]);
        let got = client_ip(ip("10.9.9.9"), &h, &trusted, ForwardedHeader::XForwardedFor);
        assert_eq!(got, ip("10.0.0.5"));
        // No header: the proxy itself.
        let got = client_ip(
            ip("10.9.9.9"),
            &HeaderMap::new(),
            &trusted,
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(got, ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let h = headers("x-forwarded-for", &["203.0.113.9, not-an-ip, 10.0.0.7"]);
        let got = client_ip(ip("10.9.9.9"), &h, &trusted, ForwardedHeader::XForwardedFor);
        assert_eq!(got, ip("10.0.0.7"));
    }

    #[test]
    fn rfc_7239_forwarded_with_ports_and_ipv6() {
        let trusted = TrustedProxies::parse(&["127.0.0.1/32", "::1"]).unwrap();
        let h = headers(
            "forwarded",
            &["for=198.51.100.1;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=127.0.0.1"],
        );
        let got = client_ip(ip("::1"), &h, &trusted, ForwardedHeader::Forwarded);
        assert_eq!(got, ip("2001:db8:cafe::17"));
        // The other header is ignored when Forwarded is configured.
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        let got = client_ip(ip("127.0.0.1"), &h, &trusted, ForwardedHeader::Forwarded);
        assert_eq!(got, ip("127.0.0.1"));
        // IPv4-mapped peers count as IPv4.
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_ranges_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(TrustedProxies::parse(&["fd00::/8", " 127.0.0.1 "]).is_ok());
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(
            b"0199a1f4-6c1e-7a53-9d4b-5a0c2e7d1f00"
        ));
        assert!(!well_formed_request_id(b""));
        assert!(!well_formed_request_id(b"a b"));
        assert!(!well_formed_request_id(b"x\"}{"));
        assert!(!well_formed_request_id(&[b'a'; 129]));
    }
}
