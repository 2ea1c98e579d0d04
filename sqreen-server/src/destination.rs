//! Webhook destinations: which addresses the server refuses to send alerts
//! to, and the checks that enforce it when a playbook is saved and again
//! when a webhook is sent.
//!
//! A webhook URL names a host the server connects to on its own: without
//! a check, whoever can save a playbook (the admin key, the dashboard) can
//! make the server POST to its own loopback services, the cloud metadata
//! endpoint (`169.254.169.254`) or anything on its private network. Unless
//! the server runs with `--allow-private-webhooks`
//! ([`crate::ServerConfig::with_private_webhooks`]), every address below is
//! refused ([`is_forbidden_ip`]):
//!
//! | IPv4 | IPv6 |
//! | --- | --- |
//! | `0.0.0.0/8` (this network, unspecified) | `::/128`, `::1/128`, the rest of `::/96` (IPv4-compatible) |
//! | `10/8`, `172.16/12`, `192.168/16` (RFC 1918) | `fc00::/7` (unique local) |
//! | `100.64/10` (CGNAT) | `fe80::/10` (link-local), `fec0::/10` (site-local) |
//! | `127/8` (loopback) | `ff00::/8` (multicast) |
//! | `169.254/16` (link-local, cloud metadata) | `100::/64` (discard), `64:ff9b:1::/48` (local NAT64) |
//! | `192.0.0/24` (protocol assignments), `192.88.99/24` (6to4 relays) | `2001::/23` (protocol assignments, Teredo) |
//! | `192.0.2/24`, `198.51.100/24`, `203.0.113/24` (documentation) | `2001:db8::/32`, `3fff::/20` (documentation) |
//! | `198.18/15` (benchmarking) | anything outside `2000::/3` (global unicast) |
//! | `224/4` (multicast), `240/4` (reserved, broadcast) | |
//!
//! IPv6 forms that carry an IPv4 address are judged by that address:
//! IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4
//! `2002:AABB:CCDD::`. Host names `localhost` and `*.localhost` are refused
//! without asking DNS. Numeric hosts such as `0x7f000001`, `2130706433` or
//! `127.1` are read as the URL standard reads them (here: `127.0.0.1`)
//! before they are judged.
//!
//! Two checks:
//! - **When a playbook is saved** ([`check_at_save`]): a literal address or
//!   a local name is judged at once; another host name is resolved, and
//!   refused if any of its addresses is forbidden. A name that does not
//!   resolve (yet) is accepted: the send-time check judges it again.
//! - **When a webhook is sent**: a literal address is judged before
//!   anything else ([`check_url`]); a host name is resolved once by
//!   [`CheckingResolver`], the HTTP client's only resolver, which refuses
//!   the host if any of its addresses is forbidden and otherwise hands the
//!   client exactly the addresses it checked. The client connects to those
//!   and no others, so a DNS answer that changes between the check and the
//!   connection (DNS rebinding) cannot slip through. The client also
//!   ignores proxy settings and follows no redirects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long the save-time check waits for DNS before accepting the name.
const SAVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Which webhook destinations the server may reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Allows loopback, private and other non-public addresses
    /// (`--allow-private-webhooks`): for receivers on the server's own
    /// network, and for tests.
    pub allow_private: bool,
}

/// Why a webhook destination is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an absolute `http(s)` URL with a host.
    #[error("a webhook needs an absolute http(s) URL")]
    NotHttp,
    /// `localhost` or a name under `.localhost`.
    #[error(
        "webhook host {0} is a local name; start the server with --allow-private-webhooks to allow it"
    )]
    LocalName(String),
    /// The host is, or resolves to, a forbidden address.
    #[error(
        "webhook host {host} is or resolves to a loopback, private or reserved address ({ip}); \
         start the server with --allow-private-webhooks to allow it"
    )]
    ForbiddenAddress {
        /// The host as the URL names it.
        host: String,
        /// The first forbidden address found.
        ip: IpAddr,
    },
}

/// Whether webhooks may not be sent to `ip` (see the module docs for the
/// ranges).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b & 0xfe) == 18)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        // Multicast, reserved and the broadcast address.
        || a >= 224
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped: the socket reaches the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    // NAT64 (well-known prefix): a translator reaches the IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4(s[6], s[7]));
    }
    // 6to4: the relay reaches the IPv4 address of bits 16..48.
    if s[0] == 0x2002 {
        return is_forbidden_v4(embedded_v4(s[1], s[2]));
    }
    // Everything else outside global unicast: unspecified, loopback,
    // IPv4-compatible, discard, local NAT64, unique local, link-local,
    // site-local, multicast.
    if s[0] & 0xe000 != 0x2000 {
        return true;
    }
    // Inside it: protocol assignments (Teredo among them) and documentation.
    (s[0] == 0x2001 && (s[1] < 0x200 || s[1] == 0xdb8)) || (s[0] == 0x3fff && s[1] < 0x1000)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Whether `name` (a host name, any case, with or without a final dot) is
/// `localhost` or under `.localhost`, which resolve to loopback by
/// convention (RFC 6761) whatever DNS says.
pub fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The host of a webhook URL as the logs show it: never the path, query,
/// user or password, which often carry a secret token.
pub fn log_host(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "(no host)".to_owned(),
        },
        Err(_) => "(invalid url)".to_owned(),
    }
}

/// What [`check_url`] found in a URL it did not refuse.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// A literal address (allowed by the policy): no DNS involved.
    Address(IpAddr),
    /// A host name: to be resolved and judged ([`CheckingResolver`]).
    Name(String),
}

/// The checks that need no DNS: the scheme, literal addresses (in every
/// form the URL standard reads as one) and local names.
///
/// # Errors
/// Why `url` is refused.
pub fn check_url(url: &str, policy: WebhookPolicy) -> Result<Checked, Refused> {
    let parsed = Url::parse(url).map_err(|_| Refused::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused::NotHttp);
    }
    let Some(host) = parsed.host_str() else {
        return Err(Refused::NotHttp);
    };
    // The parser wrote numeric hosts in their canonical form: IPv6 in
    // brackets, IPv4 dotted. A domain never parses as an IPv4 address (one
    // ending in a number would have been read as an address).
    let checked = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Checked::Address(IpAddr::V6(v6.parse().map_err(|_| Refused::NotHttp)?))
    } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
        Checked::Address(IpAddr::V4(v4))
    } else {
        Checked::Name(host.to_owned())
    };
    if policy.allow_private {
        return Ok(checked);
    }
    match &checked {
        Checked::Address(ip) if is_forbidden_ip(*ip) => Err(Refused::ForbiddenAddress {
            host: log_host(url),
            ip: *ip,
        }),
        Checked::Name(name) if is_local_name(name) => Err(Refused::LocalName(name.clone())),
        _ => Ok(checked),
    }
}

/// The first forbidden address among `addrs`, if any.
fn first_forbidden(addrs: &[SocketAddr]) -> Option<IpAddr> {
    addrs
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| is_forbidden_ip(*ip))
}

/// The check of a webhook URL when a playbook is saved: [`check_url`],
/// then, for a host name, every address it resolves to now. A name that
/// does not resolve is accepted (it is judged again at send time).
///
/// # Errors
/// Why `url` is refused.
pub async fn check_at_save(url: &str, policy: WebhookPolicy) -> Result<(), Refused> {
    let Checked::Name(name) = check_url(url, policy)? else {
        return Ok(());
    };
    if policy.allow_private {
        return Ok(());
    }
    let lookup = tokio::net::lookup_host((name.as_str(), 0));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(SAVE_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(_)) | Err(_) => return Ok(()),
    };
    match first_forbidden(&addrs) {
        Some(ip) => Err(Refused::ForbiddenAddress {
            host: log_host(url),
            ip,
        }),
        None => Ok(()),
    }
}

/// The webhook client's resolver: resolves a host name once and refuses it
/// when any address is forbidden by the policy; otherwise the client
/// connects to exactly the addresses checked here.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckingResolver {
    policy: WebhookPolicy,
}

impl CheckingResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: WebhookPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy;
        Box::pin(async move {
            if !policy.allow_private && is_local_name(&host) {
                return Err(Refused::LocalName(host).into());
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allow_private
                && let Some(ip) = first_forbidden(&addrs)
            {
                return Err(Refused::ForbiddenAddress { host, ip }.into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The [`Refused`] somewhere in the causes of `error`, if the resolver
/// refused the destination.
pub fn refusal_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: WebhookPolicy = WebhookPolicy {
        allow_private: false,
    };
    const ALLOW: WebhookPolicy = WebhookPolicy {
        allow_private: true,
    };

    /// Every special-purpose range is forbidden, public addresses are not.
    #[test]
    fn forbidden_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "3fff::1",
            "3fff:fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_forbidden_ip(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "81.2.69.160",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "::ffff:81.2.69.160",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3fff:1000::1",
            "2001:200::1",
        ] {
            assert!(!is_forbidden_ip(ip.parse().expect("ip")), "{ip}");
        }
    }

    /// Numeric hosts are read as addresses before being judged; local names
    /// are refused without DNS; the policy can allow all of them.
    #[test]
    fn urls_are_checked_without_dns() {
        for url in [
            "http://127.0.0.1:9/hook",
            "http://127.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "https://169.254.169.254/latest/meta-data/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost:8080/",
            "http://127.0.0.1./",
        ] {
            assert!(check_url(url, DENY).is_err(), "{url}");
            assert!(check_url(url, ALLOW).is_ok(), "{url}");
        }
        assert_eq!(
            check_url("http://0x7f000001/", DENY),
            Err(Refused::ForbiddenAddress {
                host: "127.0.0.1".into(),
                ip: "127.0.0.1".parse().expect("ip"),
            })
        );
        assert_eq!(
            check_url("https://81.2.69.160/x", DENY),
            Ok(Checked::Address("81.2.69.160".parse().expect("ip")))
        );
        assert_eq!(
            check_url("https://hooks.example.com/x", DENY),
            Ok(Checked::Name("hooks.example.com".into()))
        );
        for url in ["ftp://81.2.69.160/", "file:///etc/passwd", "not a url"] {
            assert_eq!(check_url(url, ALLOW), Err(Refused::NotHttp), "{url}");
        }
    }

    /// Logs see the host (and port), never the path, query or credentials.
    #[test]
    fn logs_show_the_host_only() {
        assert_eq!(
            log_host("https://user:pw@hooks.example.com:8443/T0KEN/x?key=s3cret"),
            "hooks.example.com:8443"
        );
        assert_eq!(log_host("http://[::1]/secret"), "[::1]");
        assert_eq!(log_host("garbage/secret"), "(invalid url)");
    }

    /// The resolver refuses local names before any lookup, and its refusal
    /// is found among a client error's causes.
    #[tokio::test]
    async fn resolver_refuses_local_names() {
        let resolver = CheckingResolver::new(DENY);
        let name: Name = "localhost".parse().expect("a name");
        let Err(error) = resolver.resolve(name).await else {
            panic!("localhost must be refused");
        };
        assert_eq!(
            refusal_in(error.as_ref()),
            Some(&Refused::LocalName("localhost".into()))
        );
    }
}
