//! The guarded HTTP client: every outgoing request to a URL that came from a workspace (the
//! base URL of a workspace's own LLM provider, a channel connection's `graph_base_url` or
//! `api_base_url`, a media URL a platform answered with) goes through [`Net`], so no workspace
//! can make Parley reach the server's own network (DESIGN.md section 7).
//!
//! **What is refused.** Each destination address is sorted by [`classify`]:
//! - *private* — loopback (127.0.0.0/8, ::1), RFC 1918 (10/8, 172.16/12, 192.168/16), shared
//!   CGNAT space (100.64/10), unique local IPv6 (fc00::/7): refused unless the operator sets
//!   `allow_private_networks` (a local Ollama or vLLM);
//! - *forbidden* — unspecified (0.0.0.0/8, ::), link-local (169.254/16, fe80::/10, which holds
//!   the cloud metadata services at 169.254.169.254 and 169.254.170.2), the metadata addresses
//!   that sit elsewhere (fd00:ec2::254, 100.100.100.200), multicast, broadcast and reserved
//!   space (224/4, 240/4, ff00::/8), IETF protocol space (192.0.0/24, 2001::/23, 100::/64),
//!   documentation and benchmarking ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
//!   198.18/15, 2001:db8::/32, 3fff::/20), site-local fec0::/10, and the 6to4 relay
//!   192.88.99/24: refused even with `allow_private_networks`;
//! - IPv6 forms that carry an IPv4 address — IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//!   `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::` —
//!   are judged by that IPv4 address (the local-use NAT64 prefix 64:ff9b:1::/48 counts as
//!   private);
//! - everything else is *public* and allowed.
//!
//! **Where it is checked.** On the *resolved* address, at connect time: the guarded client's
//! DNS resolver ([`GuardedResolver`]) drops every address that is not allowed and fails when
//! none is left, and the connector connects only to what the resolver returned, so a name that
//! answers with a public address when saved and `127.0.0.1` later (DNS rebinding) is refused
//! when it matters. Hosts written as IP literals never reach a resolver, so
//! [`Net::client_for`] checks them itself (after the URL parser's normalisation: `2130706433`,
//! `0x7f.1` and `[::ffff:127.0.0.1]` are all 127.0.0.1). The guarded client follows at most
//! [`MAX_REDIRECTS`] redirects, each hop checked the same way (its IP literal by the redirect
//! policy, its host name by the resolver); the trusted client follows none (a 3xx is
//! returned as it is). System proxy settings are ignored by the guarded client (a proxy would
//! resolve the name out of Parley's sight).
//!
//! **Exceptions come only from the operator.** `allowed_private_urls` lists URL prefixes that
//! workspace URLs may reach whatever their address (same scheme, host and port, and a path at
//! or under the prefix's); URLs the operator configured themselves (their providers, the
//! platform APIs) are sent with [`Net::trusted`], as written.
//!
//! A refusal is a [`Refused`]; callers turn it into `destination_not_allowed`, and never show a
//! body from the refused destination (there is none: nothing was sent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::NetworkSettings;

/// Longest wait to connect (TCP and TLS) to any destination.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The stable error code of a refused destination.
pub const CODE: &str = "destination_not_allowed";

/// What the tenant is told about a refused destination. It does not say which kind of
/// address a name resolved to (that would tell a workspace about the server's network).
pub const MESSAGE: &str = "the URL's host is, or resolves to, a loopback, private, link-local or reserved address, which this server does not connect to for workspaces (the operator can allow private networks with allow_private_networks, or list the URL in allowed_private_urls)";

/// How an address may be reached (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Anyone may reach it.
    Public,
    /// Loopback or a private network: only with `allow_private_networks`.
    Private,
    /// Never (unless an operator-listed URL).
    Forbidden,
}

/// A destination the guard refused. `Display` is [`MESSAGE`]; `reason` (for the server log)
/// says what was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// For the log: the host and the class of its address, e.g. `localhost: 127.0.0.1 is
    /// private`.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MESSAGE)
    }
}

impl std::error::Error for Refused {}

fn v4(a: [u8; 4], len: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(a), len).expect("a valid prefix length")
}

fn v6(a: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(a), len).expect("a valid prefix length")
}

static V4_FORBIDDEN: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    vec![
        v4([0, 0, 0, 0], 8),          // "this network", unspecified
        v4([169, 254, 0, 0], 16),     // link-local, cloud metadata (169.254.169.254)
        v4([100, 100, 100, 200], 32), // Alibaba Cloud metadata (inside 100.64/10)
        v4([192, 0, 0, 0], 24),       // IETF protocol assignments
        v4([192, 0, 2, 0], 24),       // TEST-NET-1
        v4([192, 88, 99, 0], 24),     // 6to4 relay anycast
        v4([198, 18, 0, 0], 15),      // benchmarking
        v4([198, 51, 100, 0], 24),    // TEST-NET-2
        v4([203, 0, 113, 0], 24),     // TEST-NET-3
        v4([224, 0, 0, 0], 4),        // multicast
        v4([240, 0, 0, 0], 4),        // reserved, broadcast
    ]
});

static V4_PRIVATE: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    vec![
        v4([127, 0, 0, 0], 8),    // loopback
        v4([10, 0, 0, 0], 8),     // RFC 1918
        v4([172, 16, 0, 0], 12),  // RFC 1918
        v4([192, 168, 0, 0], 16), // RFC 1918
        v4([100, 64, 0, 0], 10),  // shared address space (CGNAT)
    ]
});

static V6_FORBIDDEN: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    vec![
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),               // unspecified
        v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254], 128), // AWS metadata over IPv6
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),           // link-local
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),           // site-local (deprecated)
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),            // multicast
        v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64),           // discard-only
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),           // IETF protocol assignments, Teredo
        v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32),      // documentation
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),           // documentation (RFC 9637)
    ]
});

static V6_PRIVATE: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    vec![
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),               // loopback
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),            // unique local
        v6([0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0], 48), // local-use NAT64
    ]
});

/// Sorts an address into [`AddressClass`] (see the module docs for the ranges).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => match embedded_v4(a) {
            Some(inner) => classify_v4(inner),
            None if V6_FORBIDDEN.iter().any(|n| n.contains(&a)) => AddressClass::Forbidden,
            None if V6_PRIVATE.iter().any(|n| n.contains(&a)) => AddressClass::Private,
            None => AddressClass::Public,
        },
    }
}

fn classify_v4(a: Ipv4Addr) -> AddressClass {
    if V4_FORBIDDEN.iter().any(|n| n.contains(&a)) {
        AddressClass::Forbidden
    } else if V4_PRIVATE.iter().any(|n| n.contains(&a)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address stands for, when it is one of the forms that carry one.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // SIIT ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (deprecated); :: and ::1 are themselves
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(low),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:AABB:CCDD::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn permitted(ip: IpAddr, allow_private: bool) -> bool {
    match classify(ip) {
        AddressClass::Public => true,
        AddressClass::Private => allow_private,
        AddressClass::Forbidden => false,
    }
}

fn refused(host: &str, ip: IpAddr) -> Refused {
    let class = match classify(ip) {
        AddressClass::Private => "private or loopback",
        _ => "link-local, metadata or reserved",
    };
    Refused {
        reason: format!("{host}: {ip} is {class}"),
    }
}

/// The guarded client's DNS resolver: the system resolver (`getaddrinfo`, as reqwest's
/// default), then only the addresses [`classify`] allows.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Whether private networks are allowed (`allow_private_networks`).
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| permitted(a.ip(), allow_private))
                .collect();
            if allowed.is_empty() {
                let e = match all.first() {
                    Some(a) => refused(&host, a.ip()),
                    None => Refused {
                        reason: format!("{host}: no address"),
                    },
                };
                tracing::warn!(reason = %e.reason, "refused an outgoing request");
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `url` is `prefix` or under it: same scheme, host and port (default ports filled
/// in), and a path equal to the prefix's or continuing it after a `/`.
pub fn is_under(url: &url::Url, prefix: &url::Url) -> bool {
    if url.scheme() != prefix.scheme()
        || url.host() != prefix.host()
        || url.port_or_known_default() != prefix.port_or_known_default()
    {
        return false;
    }
    let base = prefix.path().trim_end_matches('/');
    let path = url.path();
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The outgoing HTTP clients: guarded for workspace URLs, trusted for the operator's own.
/// Cheap to clone (the clients share their connection pools).
#[derive(Clone)]
pub struct Net {
    guarded: reqwest::Client,
    trusted: reqwest::Client,
    allow_private: bool,
    allowed: Arc<Vec<url::Url>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("allow_private", &self.allow_private)
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// Most redirects the guarded client follows per request.
pub const MAX_REDIRECTS: usize = 5;

fn builder() -> reqwest::ClientBuilder {
    crate::assistant::provider::install_tls();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
}

/// The guarded client's redirects: at most [`MAX_REDIRECTS`] hops, each to an http(s) URL
/// without user info whose host, if an IP literal, is allowed (a host name is checked by the
/// guarded resolver when the hop connects, like any other request of this client).
fn guarded_redirects(allow_private: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let url = attempt.url();
        let literal = match url.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        };
        let refusal = if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.host().is_none()
        {
            Some(Refused {
                reason: format!("a redirect to a {} URL", url.scheme()),
            })
        } else {
            literal
                .filter(|ip| !permitted(*ip, allow_private))
                .map(|ip| refused(&ip.to_string(), ip))
        };
        match refusal {
            Some(e) => {
                tracing::warn!(reason = %e.reason, "refused a redirect");
                attempt.error(e)
            }
            None => attempt.follow(),
        }
    })
}

impl Net {
    /// The clients for `settings` (the operator's `allow_private_networks` and
    /// `allowed_private_urls`, already checked by [`crate::config::Settings::resolve`]).
    pub fn new(settings: &NetworkSettings) -> Net {
        let allow_private = settings.allow_private_networks;
        let guarded = builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(guarded_redirects(allow_private))
            .build()
            .expect("the HTTP client's TLS configuration loads");
        // Operator-configured and operator-listed URLs: no address check, so no redirect may
        // lead away from them.
        let trusted = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client's TLS configuration loads");
        let allowed = settings
            .allowed_private_urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .collect();
        Net {
            guarded,
            trusted,
            allow_private,
            allowed: Arc::new(allowed),
        }
    }

    /// The client for URLs the operator configured (their providers, the platform APIs): no
    /// address check. Never use it for a URL a workspace gave.
    pub fn trusted(&self) -> &reqwest::Client {
        &self.trusted
    }

    /// The client to send a request to `url`, which a workspace gave (or a platform answered
    /// with). Errors: [`Refused`] for a URL that is not http(s), carries a user name or
    /// password, or whose host is an IP literal that is not allowed. A host name is checked
    /// when it is resolved, at connect time.
    pub fn client_for(&self, url: &str) -> Result<&reqwest::Client, Refused> {
        let parsed = url::Url::parse(url).map_err(|_| Refused {
            reason: format!("{url:?} is not a URL"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(Refused {
                reason: format!("{}: not a plain http(s) URL", parsed.scheme()),
            });
        }
        if self.allowed.iter().any(|a| is_under(&parsed, a)) {
            return Ok(&self.trusted);
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(_)) => None,
            None => {
                return Err(Refused {
                    reason: "a URL without a host".into(),
                });
            }
        };
        if let Some(ip) = ip
            && !permitted(ip, self.allow_private)
        {
            let e = refused(&ip.to_string(), ip);
            tracing::warn!(reason = %e.reason, "refused an outgoing request");
            return Err(e);
        }
        Ok(&self.guarded)
    }

    /// The client for a platform API at `url` (a connection's Graph API or Bot API base, or a
    /// URL under it): [`Net::trusted`] when `url` is under `operator_base` — the platform
    /// URL of the operator's configuration — else [`Net::client_for`].
    pub fn platform_client(
        &self,
        url: &str,
        operator_base: &str,
    ) -> Result<&reqwest::Client, Refused> {
        let under = match (url::Url::parse(url), url::Url::parse(operator_base)) {
            (Ok(u), Ok(base)) => is_under(&u, &base),
            _ => false,
        };
        if under {
            Ok(&self.trusted)
        } else {
            self.client_for(url)
        }
    }

    /// A request to a workspace-given `url` (see [`Net::client_for`]).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, Refused> {
        Ok(self.client_for(url)?.request(method, url))
    }
}

/// The [`Refused`] behind a failed request, if the guard refused it (at resolution time).
pub fn refusal(e: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        classify(text.parse().unwrap())
    }

    #[test]
    fn addresses_are_classified() {
        use AddressClass::*;
        for (ip, want) in [
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("2606:4700:4700::1111", Public),
            ("127.0.0.1", Private),
            ("127.255.0.9", Private),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.100.100.200", Forbidden),
            ("::1", Private),
            ("fd12:3456::1", Private),
            ("0.0.0.0", Forbidden),
            ("0.1.2.3", Forbidden),
            ("::", Forbidden),
            ("169.254.169.254", Forbidden),
            ("169.254.170.2", Forbidden),
            ("fd00:ec2::254", Forbidden),
            ("fe80::1", Forbidden),
            ("224.0.0.1", Forbidden),
            ("255.255.255.255", Forbidden),
            ("ff02::1", Forbidden),
            ("192.0.2.1", Forbidden),
            ("198.51.100.7", Forbidden),
            ("203.0.113.9", Forbidden),
            ("198.18.0.1", Forbidden),
            ("2001:db8::1", Forbidden),
            // IPv6 forms of IPv4 addresses count as those addresses.
            ("::ffff:127.0.0.1", Private),
            ("::ffff:169.254.169.254", Forbidden),
            ("::ffff:8.8.8.8", Public),
            ("::ffff:0:10.0.0.1", Private),
            ("::127.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", Forbidden),
            ("64:ff9b::808:808", Public),
            ("2002:7f00:1::", Private),
            ("2002:a9fe:a9fe::1", Forbidden),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn ip_literal_hosts_are_refused_before_any_request() {
        let strict = Net::new(&NetworkSettings::default());
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://2130706433/v1",
            "http://0x7f.1/v1",
            "http://[::1]:11434/v1",
            "http://[::ffff:127.0.0.1]/v1",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5:11434",
            "http://0.0.0.0:80/",
            "file:///etc/passwd",
            "http://user:pw@example.com/",
        ] {
            assert!(strict.client_for(url).is_err(), "{url}");
        }
        assert!(strict.client_for("https://api.openai.com/v1").is_ok());
        assert!(strict.client_for("https://8.8.8.8/").is_ok());
        let private = Net::new(&NetworkSettings {
            allow_private_networks: true,
            allowed_private_urls: vec![],
        });
        assert!(private.client_for("http://127.0.0.1:11434/v1").is_ok());
        assert!(
            private.client_for("http://169.254.169.254/latest").is_err(),
            "metadata stays refused"
        );
        let listed = Net::new(&NetworkSettings {
            allow_private_networks: false,
            allowed_private_urls: vec!["http://10.0.0.5:11434/v1".into()],
        });
        assert!(listed.client_for("http://10.0.0.5:11434/v1/models").is_ok());
        assert!(listed.client_for("http://10.0.0.5:11434/v1").is_ok());
        for url in [
            "http://10.0.0.5:11434/v2",
            "http://10.0.0.5:11434/v1x",
            "http://10.0.0.5:11435/v1",
            "https://10.0.0.5:11434/v1",
        ] {
            assert!(listed.client_for(url).is_err(), "{url}");
        }
    }

    #[test]
    fn platform_urls_are_trusted_only_under_the_operators_base() {
        let net = Net::new(&NetworkSettings::default());
        let base = "http://127.0.0.1:9/v21.0";
        assert!(
            net.platform_client("http://127.0.0.1:9/v21.0/123/messages", base)
                .is_ok()
        );
        assert!(
            net.platform_client("http://127.0.0.1:9/files/1", base)
                .is_err()
        );
        assert!(
            net.platform_client("http://127.0.0.1:10/v21.0/1", base)
                .is_err()
        );
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked() {
        use axum::response::Redirect;
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "reached" }))
            .route(
                "/local",
                axum::routing::get(|| async { Redirect::temporary("/ok") }),
            )
            .route(
                "/metadata",
                axum::routing::get(|| async {
                    Redirect::temporary("http://169.254.169.254/latest/meta-data")
                }),
            )
            .route(
                "/mapped",
                axum::routing::get(|| async { Redirect::temporary("http://[::ffff:a9fe:a9fe]/") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let net = Net::new(&NetworkSettings {
            allow_private_networks: true,
            allowed_private_urls: vec![],
        });
        let get = |path: &str| {
            let url = format!("{base}{path}");
            let client = net.client_for(&url).unwrap().clone();
            async move { client.get(url).send().await }
        };
        let ok = get("/local").await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "reached");
        for path in ["/metadata", "/mapped"] {
            let err = get(path).await.unwrap_err();
            assert!(refusal(&err).is_some(), "{path}: {err}");
        }
        let _ = stop.send(());
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let net = Net::new(&NetworkSettings::default());
        let url = format!("http://localhost:{port}/v1/models");
        let err = net
            .client_for(&url)
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_err();
        let r = refusal(&err).expect("the guard refused it");
        assert!(r.reason.contains("localhost"), "{}", r.reason);
        // With private networks allowed the same request connects.
        let open = Net::new(&NetworkSettings {
            allow_private_networks: true,
            allowed_private_urls: vec![],
        });
        let accept = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .is_ok_and(|r| r.is_ok())
        });
        let sent = open
            .client_for(&url)
            .unwrap()
            .get(&url)
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(sent.as_ref().err().is_none_or(|e| refusal(e).is_none()));
        assert!(accept.await.unwrap(), "it connected");
    }
}
