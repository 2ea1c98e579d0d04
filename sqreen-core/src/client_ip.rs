//! Resolving the IP address of the client behind a request.
//!
//! The socket peer of a request is often a load balancer or reverse proxy,
//! so the client's address has to be read from headers those proxies write.
//! [`ClientIpResolver`] does that in one of two modes.
//!
//! # Default mode (no trusted proxies)
//!
//! This mode follows the Sqreen agents and needs no configuration. It reads,
//! in priority order, the configured `ip_header` (if any), then
//! `X-Forwarded-For`, `X-Client-Ip`, `X-Real-Ip`, `X-Forwarded`,
//! `X-Cluster-Client-Ip`, `Forwarded-For`, `Forwarded` and `Via`. Every entry
//! of those headers is looked at in that order: the first address routable
//! on the public internet (see [`is_global`]) wins; failing that, the first
//! private one; failing that, the socket peer.
//!
//! **This mode can be spoofed.** Any client can send
//! `X-Forwarded-For: 81.2.69.160` and be recorded under that address, which
//! lets an attacker hide, frame someone else, or dodge IP-based blocking. It
//! is only as good as "the proxies in front of the app overwrite these
//! headers". When the app sits behind known proxies, configure them as
//! trusted proxies to switch to the spoof-proof mode.
//!
//! # Spoof-proof mode (trusted proxies configured)
//!
//! Only addresses written by proxies the operator trusts are believed:
//!
//! - If the socket peer is not inside a trusted proxy network, the peer is the
//!   client and headers are ignored, since anyone can write them. Without a
//!   peer address there is no client address.
//! - Otherwise the chain is read from the configured `ip_header`, or else
//!   `X-Forwarded-For`, or else (when the request has no `X-Forwarded-For`
//!   line at all) the `for=` parameters of `Forwarded`. It is walked right to
//!   left, skipping addresses inside trusted networks; the first address not
//!   trusted is the client. Entries left of it were written by the client
//!   itself and are never believed.
//! - If every entry is trusted, the leftmost one is the client (a request
//!   from inside the trusted network); with no entry at all, the peer.
//! - An entry that is not an address (`unknown`, an obfuscated `Forwarded`
//!   node, a `Forwarded` element without `for=`, garbage) means a trusted
//!   proxy could not name the hop: the walk stops there and the peer is
//!   answered, because everything left of it may be the client's invention.
//!
//! If your proxies write only `Forwarded`, set `ip_header = "Forwarded"`:
//! otherwise a client-sent `X-Forwarded-For` is read as the chain.
//!
//! # Recipes
//!
//! Without `trusted_proxies`, the agent logs a warning at start: set it to
//! what stands in front of the application.
//!
//! | deployment | `trusted_proxies` (`SQREEN_TRUSTED_PROXIES`) |
//! | --- | --- |
//! | one reverse proxy (nginx, Caddy) on the same host | `127.0.0.1, ::1` |
//! | one reverse proxy on another host | its address, e.g. `10.0.0.5` |
//! | a cloud load balancer | its subnet (AWS ALB: the VPC's, e.g. `10.0.0.0/16`; GCP: `130.211.0.0/22, 35.191.0.0/16`; Cloudflare: its published ranges) |
//! | a load balancer, then a reverse proxy | both: `10.0.0.0/16, 127.0.0.1` |
//! | nothing: clients connect to the application | `127.0.0.1` (headers are then believed only from local tools, and every real client is its socket peer) |
//!
//! The proxy must append to `X-Forwarded-For` (nginx:
//! `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`), or set
//! `ip_header` to the header it writes alone (`X-Real-Ip`).
//!
//! # Parsing
//!
//! Header names compare ASCII case-insensitively; repeated header lines are
//! read as if joined with `,` in request order. Each comma-separated entry
//! may be `1.2.3.4`, `1.2.3.4:8080`, `2001:db8::1`, `[2001:db8::1]` or
//! `[2001:db8::1]:443`, optionally in double quotes. `Forwarded` (RFC 7239)
//! and `X-Forwarded` entries may use `for=` syntax; `Via` entries give their
//! received-by token. Empty entries are ignored, as RFC 9110 lists allow
//! them; entries that are not valid UTF-8 or not an address are garbage.
//! IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are answered as IPv4,
//! which is what dual-stack sockets report for IPv4 clients.
//!
//! Resolving does not allocate: one pass over the header lines keeps a few
//! addresses of state, whatever the size of the headers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

use crate::request::HeaderPairs;

/// How the configured `ip_header` encodes the address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpHeaderFormat {
    /// The header holds addresses as text, like `X-Forwarded-For`.
    #[default]
    Plain,
    /// HAProxy's `X-Unique-ID` built with `%{+X}o %ci:%cp_...`: the value
    /// starts with the client address in hex (8 hex digits for IPv4, 32 for
    /// IPv6), followed by ':' — e.g.
    /// `51024594:D3F5_0A000001:1F90_5C0FA2E5_0000:0014` is 81.2.69.148.
    HaproxyXUniqueId,
}

impl FromStr for IpHeaderFormat {
    type Err = String;

    /// Parses a configuration value: `""` or `"plain"` for
    /// [`Plain`](Self::Plain), `"haproxy_x_unique_id"` or `"haproxy"` for
    /// [`HaproxyXUniqueId`](Self::HaproxyXUniqueId), ASCII
    /// case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim_ascii();
        if s.is_empty() || s.eq_ignore_ascii_case("plain") {
            Ok(Self::Plain)
        } else if s.eq_ignore_ascii_case("haproxy_x_unique_id") || s.eq_ignore_ascii_case("haproxy")
        {
            Ok(Self::HaproxyXUniqueId)
        } else {
            Err(format!(
                "unknown ip header format {s:?}: expected \"plain\" or \"haproxy_x_unique_id\""
            ))
        }
    }
}

/// Finds the client IP address of a request; see the [module docs](self)
/// for both modes and the spoofing risk of the default one.
///
/// Built once from the configuration and shared by all requests.
///
/// ```
/// use sqreen_core::client_ip::{ClientIpResolver, IpHeaderFormat};
/// use std::net::IpAddr;
///
/// let headers = [("X-Forwarded-For", "6.6.6.6, 81.2.69.160, 10.0.0.2")];
/// let peer: Option<IpAddr> = Some("10.0.0.1".parse()?);
///
/// // Default mode: the first public address wins, even one a client wrote.
/// let resolver = ClientIpResolver::default();
/// assert_eq!(resolver.resolve(&headers, peer), Some("6.6.6.6".parse()?));
///
/// // Spoof-proof mode: walk the chain from the trusted proxy backwards.
/// let resolver = ClientIpResolver::new(None, IpHeaderFormat::Plain, vec!["10.0.0.0/8".parse()?]);
/// assert!(resolver.is_spoof_proof());
/// assert_eq!(resolver.resolve(&headers, peer), Some("81.2.69.160".parse()?));
///
/// // A peer outside the trusted networks is the client, whatever it claims.
/// let stranger = Some("81.2.69.200".parse()?);
/// assert_eq!(resolver.resolve(&headers, stranger), stranger);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientIpResolver {
    ip_header: Option<ConfiguredHeader>,
    trusted_proxies: Vec<IpNet>,
}

#[derive(Clone, Debug)]
struct ConfiguredHeader {
    name: String,
    syntax: Syntax,
}

impl ClientIpResolver {
    /// Builds a resolver.
    ///
    /// `ip_header` names a header to read before all others (an empty name
    /// counts as none), `format` says how that header encodes the address,
    /// and a non-empty `trusted_proxies` turns on the spoof-proof mode.
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are taken as the
    /// IPv4 networks they map.
    pub fn new(
        ip_header: Option<&str>,
        format: IpHeaderFormat,
        trusted_proxies: Vec<IpNet>,
    ) -> Self {
        let ip_header = ip_header
            .map(str::trim_ascii)
            .filter(|name| !name.is_empty())
            .map(|name| ConfiguredHeader {
                name: name.to_owned(),
                syntax: match format {
                    // A configured `Forwarded` or `Via` still needs its own syntax.
                    IpHeaderFormat::Plain => syntax_of(name),
                    IpHeaderFormat::HaproxyXUniqueId => Syntax::HaproxyHex,
                },
            });
        let trusted_proxies = trusted_proxies.into_iter().map(canonical_net).collect();
        Self {
            ip_header,
            trusted_proxies,
        }
    }

    /// Returns the client address of a request with these `headers`, received
    /// from the socket peer `peer`.
    ///
    /// `None` only when no address can be found: no usable header and no
    /// peer, or in spoof-proof mode no peer.
    pub fn resolve(&self, headers: &dyn HeaderPairs, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer.map(|ip| ip.to_canonical());
        if self.trusted_proxies.is_empty() {
            self.resolve_default(headers, peer)
        } else {
            self.resolve_trusted(headers, peer)
        }
    }

    /// Whether headers are believed only from trusted proxies, i.e.
    /// `trusted_proxies` is non-empty.
    pub fn is_spoof_proof(&self) -> bool {
        !self.trusted_proxies.is_empty()
    }

    fn resolve_default(&self, headers: &dyn HeaderPairs, peer: Option<IpAddr>) -> Option<IpAddr> {
        // Slot 0 is the configured header, then DEFAULT_HEADERS in order. The
        // first global address over all entries in that order is the first
        // global of the first slot that has one, so one pass suffices.
        let mut slots = [Firsts::default(); DEFAULT_HEADERS.len() + 1];
        headers.visit(&mut |name, value| {
            if let Some(configured) = &self.ip_header
                && name.eq_ignore_ascii_case(&configured.name)
            {
                slots[0].scan(configured.syntax, value);
            }
            if let Some(i) = DEFAULT_HEADERS
                .iter()
                .position(|(n, _)| name.eq_ignore_ascii_case(n))
            {
                slots[i + 1].scan(DEFAULT_HEADERS[i].1, value);
            }
        });
        slots
            .iter()
            .find_map(|slot| slot.global)
            .or_else(|| slots.iter().find_map(|slot| slot.other))
            .or(peer)
    }

    fn resolve_trusted(&self, headers: &dyn HeaderPairs, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut primary = Chain::default();
        let mut forwarded = Chain::default();
        headers.visit(&mut |name, value| match &self.ip_header {
            Some(configured) => {
                if name.eq_ignore_ascii_case(&configured.name) {
                    primary.scan(configured.syntax, value, &self.trusted_proxies);
                }
            }
            None => {
                if name.eq_ignore_ascii_case("X-Forwarded-For") {
                    primary.scan(Syntax::List, value, &self.trusted_proxies);
                } else if name.eq_ignore_ascii_case("Forwarded") {
                    forwarded.scan(Syntax::Forwarded, value, &self.trusted_proxies);
                }
            }
        });
        let chain = if primary.present || self.ip_header.is_some() {
            primary
        } else {
            forwarded
        };
        Some(chain.client(peer))
    }

    /// The scheme the client used, as a trusted proxy reports it: `https`
    /// or `http` from the first value of `X-Forwarded-Proto`, else the
    /// `proto=` of the first `Forwarded` element.
    ///
    /// Only in the spoof-proof mode (`trusted_proxies` set) and only when
    /// the socket peer is one of them: anyone else could claim any scheme.
    /// Other values (`wss`, garbage) are ignored.
    ///
    /// ```
    /// use sqreen_core::client_ip::{ClientIpResolver, IpHeaderFormat};
    ///
    /// let resolver = ClientIpResolver::new(None, IpHeaderFormat::Plain, vec!["10.0.0.0/8".parse()?]);
    /// let headers: &[(&str, &str)] = &[("X-Forwarded-Proto", "https")];
    /// assert_eq!(resolver.forwarded_scheme(&headers, Some("10.0.0.1".parse()?)), Some("https"));
    /// // The same header from anyone else is not believed.
    /// assert_eq!(resolver.forwarded_scheme(&headers, Some("203.0.113.9".parse()?)), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forwarded_scheme(
        &self,
        headers: &dyn HeaderPairs,
        peer: Option<IpAddr>,
    ) -> Option<&'static str> {
        let peer = peer?.to_canonical();
        if !self.is_trusted(peer) {
            return None;
        }
        let (mut proto, mut forwarded) = (None, None);
        headers.visit(&mut |name, value| {
            let first = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split(',').next())
            };
            if proto.is_none() && name.eq_ignore_ascii_case("X-Forwarded-Proto") {
                proto = first().and_then(scheme_name);
            } else if forwarded.is_none() && name.eq_ignore_ascii_case("Forwarded") {
                forwarded = first()
                    .and_then(|element| forwarded_param(element, "proto"))
                    .and_then(|value| scheme_name(strip_quotes(value.trim_ascii())));
            }
        });
        proto.or(forwarded)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Whether `ip` is routable on the public internet.
///
/// Not global: unspecified and "this network" (`0.0.0.0/8`, `::`),
/// loopback, private (`10/8`, `172.16/12`, `192.168/16`), carrier-grade NAT
/// (`100.64/10`), link-local (`169.254/16`, `fe80::/10`), benchmarking
/// (`198.18/15`), multicast, reserved and broadcast (`224/3`), unique-local
/// (`fc00::/7`), deprecated site-local (`fec0::/10`) and the rest of the
/// reserved `::/16`. IPv4-mapped IPv6 addresses are judged as their IPv4.
///
/// The documentation ranges (`192.0.2/24`, `198.51.100/24`, `203.0.113/24`,
/// `2001:db8::/32`) count as global on purpose, so that examples and tests
/// written with them behave like real public addresses.
///
/// ```
/// use sqreen_core::client_ip::is_global;
///
/// assert!(is_global("81.2.69.160".parse()?));
/// assert!(is_global("203.0.113.7".parse()?));
/// assert!(!is_global("10.1.2.3".parse()?));
/// assert!(!is_global("::ffff:192.168.0.1".parse()?));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn is_global(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let this_network = a == 0;
    let cgnat = a == 100 && b & 0xc0 == 64;
    let benchmarking = a == 198 && b & 0xfe == 18;
    let multicast_reserved_broadcast = a >= 224;
    !(this_network
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || cgnat
        || benchmarking
        || multicast_reserved_broadcast)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    // `::/16` holds `::`, `::1` and the deprecated IPv4-compatible block;
    // IPv4-mapped addresses never get here.
    let reserved = first == 0;
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let site_local = first & 0xffc0 == 0xfec0;
    let multicast = first & 0xff00 == 0xff00;
    !(reserved || unique_local || link_local || site_local || multicast)
}

impl fmt::Display for IpHeaderFormat {
    /// Writes the configuration value that [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            Self::HaproxyXUniqueId => "haproxy_x_unique_id",
        })
    }
}

/// The headers of the default mode after the configured one, by priority.
const DEFAULT_HEADERS: [(&str, Syntax); 8] = [
    ("X-Forwarded-For", Syntax::List),
    ("X-Client-Ip", Syntax::List),
    ("X-Real-Ip", Syntax::List),
    ("X-Forwarded", Syntax::XForwarded),
    ("X-Cluster-Client-Ip", Syntax::List),
    ("Forwarded-For", Syntax::List),
    ("Forwarded", Syntax::Forwarded),
    ("Via", Syntax::Via),
];

/// Longer tokens cannot be an address (`[v6%scope]:port` fits); they
/// are rejected before the parsers see them, so huge garbage stays cheap.
const MAX_ADDR_LEN: usize = 64;

/// How one comma-separated entry of a header names an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    /// `1.2.3.4`, `[v6]:port` and the like.
    List,
    /// A [`Syntax::List`] entry or a [`Syntax::Forwarded`] element.
    XForwarded,
    /// RFC 7239 elements: `for=...;proto=...`.
    Forwarded,
    /// `1.1 received-by (comment)`.
    Via,
    /// See [`IpHeaderFormat::HaproxyXUniqueId`].
    HaproxyHex,
}

fn syntax_of(header_name: &str) -> Syntax {
    DEFAULT_HEADERS
        .iter()
        .find(|(name, _)| header_name.eq_ignore_ascii_case(name))
        .map_or(Syntax::List, |&(_, syntax)| syntax)
}

/// One entry of a header list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Nothing between two commas.
    Empty,
    /// Something that is not an address.
    Garbage,
    Ip(IpAddr),
}

/// Calls `f` with each entry of one header line while it returns `true`.
///
/// Splits on every comma, quotes or not: honoring quotes would let a client
/// open one that swallows the entries proxies append after its own.
fn for_each_entry(syntax: Syntax, value: &[u8], mut f: impl FnMut(Entry) -> bool) {
    for raw in value.split(|&b| b == b',') {
        // A comma byte never occurs inside a UTF-8 sequence, so splitting
        // bytes first keeps one bad entry from spoiling its neighbours.
        let entry = match std::str::from_utf8(raw) {
            Ok(text) => parse_entry(syntax, text),
            Err(_) => Entry::Garbage,
        };
        if !f(entry) {
            return;
        }
    }
}

fn parse_entry(syntax: Syntax, text: &str) -> Entry {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Entry::Empty;
    }
    let ip = match syntax {
        Syntax::List => parse_addr(text),
        Syntax::XForwarded if text.contains('=') => return parse_forwarded_element(text),
        Syntax::XForwarded => parse_addr(text),
        Syntax::Forwarded => return parse_forwarded_element(text),
        Syntax::Via => text.split_ascii_whitespace().nth(1).and_then(parse_addr),
        Syntax::HaproxyHex => parse_haproxy_hex(text),
    };
    ip.map_or(Entry::Garbage, Entry::Ip)
}

/// Reads the `for=` parameter of an RFC 7239 element.
///
/// `for=unknown`, obfuscated `for=_name` and elements without `for=` are
/// garbage: a proxy wrote them but did not name the hop.
fn parse_forwarded_element(text: &str) -> Entry {
    forwarded_param(text, "for")
        .and_then(parse_addr)
        .map_or(Entry::Garbage, Entry::Ip)
}

/// The raw value of parameter `key` (`for`, `proto`, …, any case) of an
/// RFC 7239 element, as written (possibly quoted).
fn forwarded_param<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    element
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim_ascii().eq_ignore_ascii_case(key))
        .map(|(_, value)| value)
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80`, possibly
/// in double quotes, into its canonical address.
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = strip_quotes(text.trim_ascii()).trim_ascii();
    if text.len() > MAX_ADDR_LEN {
        return None;
    }
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match text.parse::<SocketAddr>() {
            Ok(socket) => socket.ip(),
            Err(_) => IpAddr::V6(text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?),
        },
    };
    Some(ip.to_canonical())
}

/// `https` or `http`, whatever their case; `None` for anything else.
fn scheme_name(text: &str) -> Option<&'static str> {
    let text = text.trim_ascii();
    if text.eq_ignore_ascii_case("https") {
        Some("https")
    } else if text.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

fn strip_quotes(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(text)
}

/// Decodes the hex client address HAProxy puts before the first ':'.
fn parse_haproxy_hex(text: &str) -> Option<IpAddr> {
    let (hex, _) = text.split_once(':')?;
    // `from_str_radix` would also take a leading sign.
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let ip = match hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(hex, 16).ok()?)),
        32 => IpAddr::V6(Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?)),
        _ => return None,
    };
    Some(ip.to_canonical())
}

/// Maps `::ffff:a.b.c.d/n` (n >= 96) to `a.b.c.d/(n-96)`, since addresses
/// are compared in canonical form.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Ok(v4_net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4_net);
    }
    net
}

/// The first global and first non-global address of one default-mode slot.
#[derive(Clone, Copy, Default)]
struct Firsts {
    global: Option<IpAddr>,
    other: Option<IpAddr>,
}

impl Firsts {
    fn scan(&mut self, syntax: Syntax, value: &[u8]) {
        if self.global.is_some() {
            // Later entries of this slot cannot change the answer.
            return;
        }
        for_each_entry(syntax, value, |entry| {
            if let Entry::Ip(ip) = entry {
                if is_global(ip) {
                    self.global = Some(ip);
                    return false;
                }
                self.other.get_or_insert(ip);
            }
            true
        });
    }
}

/// The spoof-proof walk, done left to right in one pass: the right-to-left
/// walk stops at the rightmost entry that is not a trusted address, so it
/// is enough to remember that entry.
#[derive(Default)]
struct Chain {
    present: bool,
    rightmost_untrusted: Option<Entry>,
    leftmost: Option<IpAddr>,
}

impl Chain {
    fn scan(&mut self, syntax: Syntax, value: &[u8], trusted: &[IpNet]) {
        self.present = true;
        for_each_entry(syntax, value, |entry| {
            match entry {
                Entry::Empty => {}
                Entry::Garbage => self.rightmost_untrusted = Some(entry),
                Entry::Ip(ip) => {
                    self.leftmost.get_or_insert(ip);
                    if !trusted.iter().any(|net| net.contains(&ip)) {
                        self.rightmost_untrusted = Some(entry);
                    }
                }
            }
            true
        });
    }

    fn client(&self, peer: IpAddr) -> IpAddr {
        match self.rightmost_untrusted {
            Some(Entry::Ip(ip)) => ip,
            Some(Entry::Empty | Entry::Garbage) => peer,
            None => self.leftmost.unwrap_or(peer),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Raw byte headers for cases with non-UTF-8 values (a slice is unsized,
    /// so it cannot be passed as `&dyn HeaderPairs` directly).
    struct Raw<'a>(&'a [(&'a str, &'a [u8])]);

    impl HeaderPairs for Raw<'_> {
        fn visit(&self, f: &mut dyn FnMut(&str, &[u8])) {
            self.0.visit(f);
        }
    }

    const NO_HEADERS: [(&str, &str); 0] = [];

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn default() -> ClientIpResolver {
        ClientIpResolver::default()
    }

    fn configured(header: &str, format: IpHeaderFormat) -> ClientIpResolver {
        ClientIpResolver::new(Some(header), format, Vec::new())
    }

    fn trusted(nets: &[&str]) -> ClientIpResolver {
        trusted_with(None, IpHeaderFormat::Plain, nets)
    }

    fn trusted_with(
        header: Option<&str>,
        format: IpHeaderFormat,
        nets: &[&str],
    ) -> ClientIpResolver {
        ClientIpResolver::new(
            header,
            format,
            nets.iter().map(|n| n.parse().unwrap()).collect(),
        )
    }

    fn check(
        resolver: &ClientIpResolver,
        headers: &dyn HeaderPairs,
        peer: Option<&str>,
        expected: Option<&str>,
    ) {
        let got = resolver.resolve(headers, peer.map(ip));
        assert_eq!(
            got,
            expected.map(ip),
            "resolver {resolver:?}, peer {peer:?}"
        );
    }

    /// One `#[test]` per row, so a failure names its case.
    macro_rules! cases {
        ($($(#[doc = $doc:literal])+ $name:ident: $resolver:expr, $headers:expr, $peer:expr => $expected:expr;)+) => {
            $($(#[doc = $doc])+ #[test] fn $name() { check(&$resolver, &$headers, $peer, $expected); })+
        };
    }

    const PEER: Option<&str> = Some("10.0.0.1");

    cases! {
        /// A plain IPv4 entry is read.
        v4: default(), [("X-Forwarded-For", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// A plain IPv6 entry is read.
        v6: default(), [("X-Forwarded-For", "2001:4860:4860::8888")], PEER => Some("2001:4860:4860::8888");
        /// An IPv4 entry with a port loses the port.
        v4_with_port: default(), [("X-Forwarded-For", "81.2.69.160:8080")], PEER => Some("81.2.69.160");
        /// A bracketed IPv6 entry without a port is read.
        bracketed_v6: default(), [("X-Forwarded-For", "[2001:4860:4860::8888]")], PEER => Some("2001:4860:4860::8888");
        /// A bracketed IPv6 entry with a port loses brackets and port.
        bracketed_v6_with_port: default(), [("X-Forwarded-For", " [2001:4860:4860::8888]:443 ")], PEER => Some("2001:4860:4860::8888");
        /// Surrounding double quotes are stripped.
        quoted_entry: default(), [("X-Forwarded-For", "\"81.2.69.160\"")], PEER => Some("81.2.69.160");
        /// With only private entries, the first private one is the answer.
        private_fallback: default(), [("X-Forwarded-For", "10.0.0.2, 192.168.1.1")], PEER => Some("10.0.0.2");
        /// A global entry beats private entries before it, and the first global wins.
        first_global_wins_over_earlier_private: default(), [("X-Forwarded-For", "10.0.0.2, 81.2.69.160, 81.2.69.161")], PEER => Some("81.2.69.160");
        /// Without candidate headers, the peer is the answer.
        peer_fallback: default(), [("User-Agent", "curl/8")], PEER => PEER;
        /// Without headers or peer there is no answer.
        nothing_at_all: default(), NO_HEADERS, None => None;
        /// Garbage entries are skipped and the parse goes on.
        garbage_entries_skipped: default(), [("X-Forwarded-For", "unknown, abc, 1.2.3, 999.1.1.1, , ,1.2.3.4.5, [::1, 81.2.69.160")], PEER => Some("81.2.69.160");
        /// A header of nothing but garbage falls back to the peer.
        only_garbage_falls_back_to_peer: default(), [("X-Forwarded-For", "unknown, , \"\", [], :80")], PEER => PEER;
        /// Non-UTF-8 bytes spoil only the entry they are in.
        non_utf8_entry_skipped: default(), Raw(&[("X-Forwarded-For", b"\xff\xfe, 81.2.69.\xc3, 81.2.69.160")]), PEER => Some("81.2.69.160");
        /// A wholly non-UTF-8 value is garbage, and a later header still counts.
        non_utf8_value_skipped: default(), Raw(&[("X-Forwarded-For", b"\x80\x81\x82"), ("X-Real-Ip", b"81.2.69.160")]), PEER => Some("81.2.69.160");
        /// `Forwarded` reads a quoted, bracketed IPv6 `for=` with a port.
        forwarded_quoted_v6_with_port: default(), [("Forwarded", "for=\"[2001:db8:cafe::17]:4711\"")], PEER => Some("2001:db8:cafe::17");
        /// `Forwarded` reads `for=` among other parameters and ignores `by=`.
        forwarded_for_among_params: default(), [("Forwarded", "proto=http;by=203.0.113.43;for=192.0.2.60")], PEER => Some("192.0.2.60");
        /// The `for` parameter name is case-insensitive.
        forwarded_param_name_case_insensitive: default(), [("Forwarded", "FOR = 81.2.69.160")], PEER => Some("81.2.69.160");
        /// `for=unknown` is skipped.
        forwarded_unknown_skipped: default(), [("Forwarded", "for=unknown, for=81.2.69.160")], PEER => Some("81.2.69.160");
        /// Obfuscated identifiers are skipped.
        forwarded_obfuscated_skipped: default(), [("Forwarded", "for=_hidden, for=\"_SEVKISEK\"")], PEER => PEER;
        /// Every element of a multi-element `Forwarded` is considered, in order.
        forwarded_multiple_elements: default(), [("Forwarded", "for=10.0.0.3, for=198.51.100.17;proto=https, for=81.2.69.160")], PEER => Some("198.51.100.17");
        /// `Via` gives its received-by token when it is an address.
        via_received_by: default(), [("Via", "1.1 10.0.0.9, 1.1 81.2.69.160:8080 (squid)")], PEER => Some("81.2.69.160");
        /// A `Via` host name is garbage.
        via_host_name_skipped: default(), [("Via", "1.1 proxy.example:8080 (comment), HTTP/1.1")], PEER => PEER;
        /// `X-Forwarded` accepts `for=` syntax.
        x_forwarded_for_syntax: default(), [("X-Forwarded", "for=\"81.2.69.160:1234\";proto=https")], PEER => Some("81.2.69.160");
        /// `X-Forwarded` accepts a plain address too.
        x_forwarded_plain: default(), [("X-Forwarded", "10.0.0.4, 81.2.69.160")], PEER => Some("81.2.69.160");
        /// Header priority, not request order, decides between global addresses.
        priority_order_across_headers: default(), [("Via", "1.1 81.2.69.163"), ("X-Real-Ip", "81.2.69.161"), ("X-Forwarded-For", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// A global address in a lower-priority header beats a private one in a higher.
        global_beats_higher_priority_private: default(), [("X-Forwarded-For", "10.0.0.2"), ("X-Cluster-Client-Ip", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// The private fallback also follows header priority.
        private_fallback_by_priority: default(), [("X-Real-Ip", "192.168.0.7"), ("X-Forwarded-For", "10.0.0.2")], PEER => Some("10.0.0.2");
        /// The configured header is read before all defaults.
        configured_header_wins: configured("CF-Connecting-IP", IpHeaderFormat::Plain), [("X-Forwarded-For", "81.2.69.160"), ("cf-connecting-ip", "81.2.69.161")], PEER => Some("81.2.69.161");
        /// A configured `Forwarded` keeps its `for=` syntax.
        configured_forwarded_syntax: configured("forwarded", IpHeaderFormat::Plain), [("X-Forwarded-For", "81.2.69.160"), ("Forwarded", "for=81.2.69.161")], PEER => Some("81.2.69.161");
        /// HAProxy's hex prefix decodes to IPv4.
        haproxy_hex_v4: configured("X-Unique-ID", IpHeaderFormat::HaproxyXUniqueId), [("X-Unique-ID", "51024594:D3F5_0A000001:1F90_5C0FA2E5_0000:0014")], PEER => Some("81.2.69.148");
        /// HAProxy's 32-digit hex prefix decodes to IPv6.
        haproxy_hex_v6: configured("X-Unique-ID", IpHeaderFormat::HaproxyXUniqueId), [("x-unique-id", "20014860486000000000000000008888:D3F5_0A000001:1F90_5C0FA2E5_0000:0014")], PEER => Some("2001:4860:4860::8888");
        /// Bad hex (wrong digit, sign, length, no colon) is garbage and the defaults take over.
        haproxy_bad_hex: configured("X-Unique-ID", IpHeaderFormat::HaproxyXUniqueId), [("X-Unique-ID", "5102459Z:D3F5"), ("X-Unique-ID", "+1024594:D3F5"), ("X-Unique-ID", "5102459:D3F5"), ("X-Unique-ID", "51024594"), ("X-Forwarded-For", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// Header names match ASCII case-insensitively.
        header_names_case_insensitive: default(), [("x-FORWARDED-for", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// Repeated lines read as one list in request order.
        repeated_xff_lines: default(), [("X-Forwarded-For", "10.0.0.2"), ("X-Real-Ip", "81.2.69.161"), ("X-Forwarded-For", "192.168.0.3, 81.2.69.160")], PEER => Some("81.2.69.160");
        /// An IPv4-mapped IPv6 entry is judged and answered as IPv4.
        ipv4_mapped_v6: default(), [("X-Forwarded-For", "::ffff:10.0.0.2, [::ffff:81.2.69.160]:80")], PEER => Some("81.2.69.160");
        /// An IPv4-mapped peer is answered as IPv4.
        ipv4_mapped_peer: default(), NO_HEADERS, Some("::ffff:10.0.0.1") => Some("10.0.0.1");
        /// An empty configured header name is ignored.
        empty_configured_name_ignored: configured("  ", IpHeaderFormat::Plain), [("", "81.2.69.161"), ("X-Forwarded-For", "81.2.69.160")], PEER => Some("81.2.69.160");

        /// A peer outside the trusted networks is the client; its headers are ignored.
        trusted_untrusted_peer_is_client: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.160")], Some("81.2.69.200") => Some("81.2.69.200");
        /// Without a peer, spoof-proof mode has no answer.
        trusted_no_peer: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.160")], None => None;
        /// The chain walks right to left past trusted IPv4 proxies.
        trusted_chain_walk_v4: trusted(&["10.0.0.0/8", "192.168.0.0/16"]), [("X-Forwarded-For", "81.2.69.160, 192.168.4.4, 10.0.0.2")], PEER => Some("81.2.69.160");
        /// The chain walks right to left past trusted IPv6 proxies.
        trusted_chain_walk_v6: trusted(&["2001:db8:1::/48"]), [("X-Forwarded-For", "2001:4860::1, [2001:db8:1::5]:443")], Some("2001:db8:1::1") => Some("2001:4860::1");
        /// Client-written entries left of the first untrusted one are ignored.
        trusted_spoofed_left_entries_ignored: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "6.6.6.6, 1.1.1.1, 81.2.69.160, 10.0.0.2")], PEER => Some("81.2.69.160");
        /// The first untrusted address wins even when it is private.
        trusted_private_client: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.160, 192.168.1.5")], PEER => Some("192.168.1.5");
        /// An all-trusted chain answers its leftmost entry.
        trusted_all_trusted_leftmost: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", ", 10.0.0.9, 10.0.0.2,")], PEER => Some("10.0.0.9");
        /// A trusted peer without a chain header is the client.
        trusted_no_chain_is_peer: trusted(&["10.0.0.0/8"]), [("X-Real-Ip", "81.2.69.160")], PEER => PEER;
        /// Garbage in the chain stops the walk at the peer.
        trusted_garbage_stops_walk: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.160, unknown, 10.0.0.2")], PEER => PEER;
        /// Non-UTF-8 bytes left of the real client do not hide it.
        trusted_non_utf8_left_entry: trusted(&["10.0.0.0/8"]), Raw(&[("X-Forwarded-For", b"\xff\"\", 81.2.69.160, 10.0.0.2")]), PEER => Some("81.2.69.160");
        /// An unterminated quote cannot swallow the entries proxies append.
        trusted_unterminated_quote: trusted(&["10.0.0.0/8"]), [("Forwarded", "for=\"6.6.6.6, for=81.2.69.160")], PEER => Some("81.2.69.160");
        /// Repeated chain lines join in request order.
        trusted_repeated_lines: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "81.2.69.160, 10.0.0.2")], PEER => Some("81.2.69.160");
        /// Without `X-Forwarded-For`, the `Forwarded` `for=` chain is walked.
        trusted_forwarded_fallback: trusted(&["10.0.0.0/8"]), [("Forwarded", "for=6.6.6.6, for=81.2.69.160;proto=https, for=10.0.0.2")], PEER => Some("81.2.69.160");
        /// `X-Forwarded-For` is preferred over `Forwarded`.
        trusted_xff_preferred: trusted(&["10.0.0.0/8"]), [("Forwarded", "for=81.2.69.161"), ("X-Forwarded-For", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// An obfuscated `Forwarded` hop stops the walk at the peer.
        trusted_forwarded_obfuscated: trusted(&["10.0.0.0/8"]), [("Forwarded", "for=81.2.69.160, for=_hidden, for=10.0.0.2")], PEER => PEER;
        /// A configured header replaces `X-Forwarded-For` as the chain.
        trusted_configured_header: trusted_with(Some("X-Real-Ip"), IpHeaderFormat::Plain, &["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.161"), ("X-Real-Ip", "81.2.69.160")], PEER => Some("81.2.69.160");
        /// A configured header absent from the request leaves the peer.
        trusted_configured_header_absent: trusted_with(Some("X-Real-Ip"), IpHeaderFormat::Plain, &["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.161")], PEER => PEER;
        /// A configured HAProxy header is decoded in spoof-proof mode.
        trusted_haproxy: trusted_with(Some("X-Unique-ID"), IpHeaderFormat::HaproxyXUniqueId, &["10.0.0.0/8"]), [("X-Unique-ID", "51024594:D3F5_0A000001:1F90")], PEER => Some("81.2.69.148");
        /// An IPv4-mapped peer matches an IPv4 trusted network.
        trusted_mapped_peer: trusted(&["10.0.0.0/8"]), [("X-Forwarded-For", "81.2.69.160")], Some("::ffff:10.0.0.1") => Some("81.2.69.160");
        /// An IPv4-mapped trusted network matches IPv4 addresses.
        trusted_mapped_network: trusted(&["::ffff:10.0.0.0/104"]), [("X-Forwarded-For", "81.2.69.160, 10.0.0.2")], PEER => Some("81.2.69.160");
    }

    /// `is_global` sorts each kind of address as documented.
    #[test]
    fn is_global_cases() {
        let cases = [
            ("public v4", "81.2.69.160", true),
            ("public v4 other", "8.8.8.8", true),
            ("documentation 192.0.2/24", "192.0.2.1", true),
            ("documentation 198.51.100/24", "198.51.100.1", true),
            ("documentation 203.0.113/24", "203.0.113.1", true),
            ("just outside 172.16/12", "172.32.0.1", true),
            ("just outside CGNAT", "100.128.0.1", true),
            ("private 10/8", "10.1.2.3", false),
            ("private 172.16/12", "172.31.255.255", false),
            ("private 192.168/16", "192.168.0.1", false),
            ("loopback", "127.0.0.1", false),
            ("link-local", "169.254.1.1", false),
            ("unspecified", "0.0.0.0", false),
            ("this network", "0.1.2.3", false),
            ("CGNAT", "100.64.0.1", false),
            ("CGNAT top", "100.127.255.255", false),
            ("benchmarking", "198.19.0.1", false),
            ("multicast", "224.0.0.1", false),
            ("reserved", "240.0.0.1", false),
            ("broadcast", "255.255.255.255", false),
            ("public v6", "2001:4860:4860::8888", true),
            ("documentation v6", "2001:db8::1", true),
            ("NAT64 v6", "64:ff9b::51.2.69.160", true),
            ("unspecified v6", "::", false),
            ("loopback v6", "::1", false),
            ("unique-local v6", "fd12:3456::1", false),
            ("unique-local v6 fc", "fc00::1", false),
            ("link-local v6", "fe80::1", false),
            ("site-local v6", "fec0::1", false),
            ("multicast v6", "ff02::1", false),
            ("mapped public", "::ffff:81.2.69.160", true),
            ("mapped private", "::ffff:192.168.0.1", false),
            ("mapped loopback", "::ffff:127.0.0.1", false),
        ];
        for (name, addr, expected) in cases {
            assert_eq!(is_global(ip(addr)), expected, "{name}: {addr}");
        }
    }

    /// Configuration strings map to formats, and unknown ones are errors.
    #[test]
    fn ip_header_format_from_str() {
        let cases = [
            ("empty", "", Some(IpHeaderFormat::Plain)),
            ("plain", "plain", Some(IpHeaderFormat::Plain)),
            ("plain any case", " Plain ", Some(IpHeaderFormat::Plain)),
            (
                "full name",
                "haproxy_x_unique_id",
                Some(IpHeaderFormat::HaproxyXUniqueId),
            ),
            (
                "short name",
                "HAProxy",
                Some(IpHeaderFormat::HaproxyXUniqueId),
            ),
            ("unknown", "nginx", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(text.parse::<IpHeaderFormat>().ok(), expected, "{name}");
        }
        let err = "nginx".parse::<IpHeaderFormat>().unwrap_err();
        assert!(
            err.contains("nginx") && err.contains("haproxy_x_unique_id"),
            "{err}"
        );
        for format in [IpHeaderFormat::Plain, IpHeaderFormat::HaproxyXUniqueId] {
            assert_eq!(format.to_string().parse::<IpHeaderFormat>(), Ok(format));
        }
    }

    /// Spoof-proof mode is on exactly when trusted proxies are configured.
    #[test]
    fn spoof_proof_iff_trusted_proxies() {
        assert!(!default().is_spoof_proof());
        assert!(!configured("X-Real-Ip", IpHeaderFormat::Plain).is_spoof_proof());
        assert!(trusted(&["10.0.0.0/8"]).is_spoof_proof());
    }

    /// Very long values, huge tokens and many lines resolve without panicking.
    #[test]
    fn long_values() {
        let many_entries = "10.0.0.2, ".repeat(50_000) + "81.2.69.160";
        let huge_token = "1".repeat(1_000_000);
        let brackets = "[".repeat(100_000) + "]:" + &"9".repeat(100_000);
        let headers = vec![
            ("X-Forwarded-For".to_owned(), huge_token.clone()),
            ("X-Forwarded-For".to_owned(), brackets.clone()),
            ("Forwarded".to_owned(), "for=".repeat(100_000)),
            ("Via".to_owned(), "1.1 ".repeat(100_000)),
            ("X-Forwarded-For".to_owned(), many_entries),
        ];
        assert_eq!(default().resolve(&headers, None), Some(ip("81.2.69.160")));
        let chain = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            chain.resolve(&headers, Some(ip("10.0.0.1"))),
            Some(ip("81.2.69.160"))
        );
        let garbage_only = vec![
            ("X-Forwarded-For".to_owned(), huge_token),
            ("Forwarded".to_owned(), brackets),
        ];
        assert_eq!(default().resolve(&garbage_only, None), None);
    }

    /// Pseudo-random bytes never panic, and a peer always yields an answer.
    #[test]
    fn random_bytes_never_panic() {
        const NAMES: [&str; 11] = [
            "X-Forwarded-For",
            "x-client-ip",
            "X-Real-Ip",
            "X-Forwarded",
            "X-Cluster-Client-Ip",
            "Forwarded-For",
            "FORWARDED",
            "Via",
            "X-Unique-ID",
            "",
            "Other",
        ];
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF:.,;=\"[]_ \t-forFORunknw%\xff\xc3\x80\x00";
        let resolvers = [
            default(),
            configured("X-Unique-ID", IpHeaderFormat::HaproxyXUniqueId),
            configured("Forwarded", IpHeaderFormat::Plain),
            trusted(&["0.0.0.0/0", "::/0"]),
            trusted(&["10.0.0.0/8", "fc00::/7"]),
            trusted_with(
                Some("X-Unique-ID"),
                IpHeaderFormat::HaproxyXUniqueId,
                &["0.0.0.0/0"],
            ),
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let peers = [
            None,
            Some(ip("10.0.0.1")),
            Some(ip("81.2.69.200")),
            Some(ip("fd00::1")),
        ];
        for _ in 0..3_000 {
            let lines = (next() % 5) as usize;
            let mut values: Vec<(&str, Vec<u8>)> = Vec::new();
            for _ in 0..lines {
                let name = NAMES[(next() % NAMES.len() as u64) as usize];
                let len = (next() % 48) as usize;
                let value = (0..len)
                    .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                    .collect();
                values.push((name, value));
            }
            let pairs: Vec<(&str, &[u8])> =
                values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let headers = Raw(&pairs);
            for resolver in &resolvers {
                for peer in peers {
                    let got = resolver.resolve(&headers, peer);
                    if peer.is_some() {
                        assert!(got.is_some(), "{resolver:?} {pairs:?}");
                    }
                    if resolver.is_spoof_proof() && peer.is_some_and(|p| !resolver.is_trusted(p)) {
                        assert_eq!(got, peer, "{resolver:?} {pairs:?}");
                    }
                }
            }
        }
    }

    /// The scheme comes from a trusted peer only, in either header, and only
    /// `http` or `https`.
    #[test]
    fn forwarded_scheme_from_trusted_proxies() {
        let resolver = trusted(&["10.0.0.0/8"]);
        let proxy = Some(ip("10.1.2.3"));
        // (headers, connection peer, expected scheme)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<IpAddr>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("X-Forwarded-Proto", "HTTPS")], proxy, Some("https")),
            (
                &[("x-forwarded-proto", "https, http")],
                proxy,
                Some("https"),
            ),
            (&[("X-Forwarded-Proto", "http")], proxy, Some("http")),
            (
                &[("X-Forwarded-Proto", "https")],
                Some(ip("203.0.113.9")),
                None,
            ),
            (&[("X-Forwarded-Proto", "https")], None, None),
            (&[("X-Forwarded-Proto", "wss")], proxy, None),
            (
                &[("Forwarded", "for=1.2.3.4;proto=https, for=10.0.0.9")],
                proxy,
                Some("https"),
            ),
            (
                &[("Forwarded", "for=1.2.3.4;Proto=\"http\"")],
                proxy,
                Some("http"),
            ),
            (&[("Forwarded", "for=1.2.3.4")], proxy, None),
            (
                &[("Forwarded", "proto=http"), ("X-Forwarded-Proto", "https")],
                proxy,
                Some("https"),
            ),
        ];
        for (headers, peer, expected) in cases {
            assert_eq!(
                resolver.forwarded_scheme(headers, *peer),
                *expected,
                "{headers:?}"
            );
        }
        // Without trusted proxies, nobody is believed.
        let headers: &[(&str, &str)] = &[("X-Forwarded-Proto", "https")];
        assert_eq!(default().forwarded_scheme(&headers, proxy), None);
    }
}
