//! The Via header (RFC 3261 §20.42, §18.2.1) with RFC 3581 `rport` and RFC 5118 IPv6 forms.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::{ErrorKind, ParseError, Result};
use crate::params::Params;
use crate::scan::{self, Cursor};
use crate::uri::Host;

/// The transport of a Via's sent-protocol (`SIP/2.0/UDP`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS over TCP
    Tls,
    /// SCTP
    Sctp,
    /// WebSocket (RFC 7118)
    Ws,
    /// Secure WebSocket (RFC 7118)
    Wss,
    /// Any other token.
    Other(String),
}

impl Transport {
    /// Parses a transport token, case-insensitively.
    pub fn parse(s: &[u8]) -> Transport {
        // the usual spelling first
        match s {
            b"UDP" => return Transport::Udp,
            b"TCP" => return Transport::Tcp,
            b"TLS" => return Transport::Tls,
            _ => {}
        }
        let is = |t: &[u8]| s.eq_ignore_ascii_case(t);
        if is(b"UDP") {
            Transport::Udp
        } else if is(b"TCP") {
            Transport::Tcp
        } else if is(b"TLS") {
            Transport::Tls
        } else if is(b"SCTP") {
            Transport::Sctp
        } else if is(b"WS") {
            Transport::Ws
        } else if is(b"WSS") {
            Transport::Wss
        } else {
            Transport::Other(scan::string(s).to_ascii_uppercase())
        }
    }

    /// The token in upper case, as Via writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
            Transport::Other(s) => s,
        }
    }

    /// Whether the transport is reliable (no retransmissions, RFC 3261 §17.1.1.2).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port: 5061 for TLS, 5060 otherwise (RFC 3261 §18.2.2, §19.1.2).
    pub fn default_port(&self) -> u16 {
        match self {
            Transport::Tls | Transport::Wss => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Via value: who sent the request and how to reach them with the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version, normally `SIP/2.0`.
    pub protocol: String,
    /// Transport of the hop.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// Parameters: branch, received, rport, maddr, ttl and extensions.
    pub params: Params,
}

/// The magic cookie that starts every RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

impl Via {
    /// A `SIP/2.0/<transport>` Via with the given sent-by and branch.
    pub fn new(transport: Transport, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP/2.0".into(),
            transport,
            host,
            port,
            params,
        }
    }

    /// Parses one Via value (no commas).
    pub fn parse(s: &[u8]) -> Result<Via> {
        let mut c = Cursor::new(s);
        let p = ViaParts::split(&mut c)?;
        let params = Params::parse(&mut c).map_err(|e| e.with_header("Via"))?;
        if !c.at_end() {
            return Err(bad("unexpected text"));
        }
        let mut protocol = String::with_capacity(p.name.len() + p.version.len() + 1);
        protocol.push_str(&scan::string(p.name));
        protocol.push('/');
        protocol.push_str(&scan::string(p.version));
        let host = Host::parse(p.host).map_err(|_| bad("bad sent-by host"))?;
        Ok(Via {
            protocol,
            transport: Transport::parse(p.transport),
            host,
            port: p.port,
            params,
        })
    }

    /// The `branch` parameter (transaction id, RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// Whether the branch carries the RFC 3261 magic cookie (else RFC 2543 matching applies).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    /// The `received` parameter as a host (bare or bracketed IPv6 accepted, RFC 5118 §4.5).
    pub fn received(&self) -> Option<Host> {
        self.params
            .value("received")
            .and_then(|v| Host::parse_lenient(v.as_bytes()).ok())
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<Host> {
        self.params
            .value("maddr")
            .and_then(|v| Host::parse_lenient(v.as_bytes()).ok())
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.value("ttl").and_then(|v| v.parse().ok())
    }

    /// sent-by port or the transport's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or_else(|| self.transport.default_port())
    }
}

impl Via {
    /// Whether `s` (one Via value, no commas) parses: what [`Via::parse`] says, told without
    /// allocating.
    pub(crate) fn parses_in_full(s: &[u8]) -> bool {
        let mut c = Cursor::new(s);
        let Ok(p) = ViaParts::split(&mut c) else {
            return false;
        };
        crate::params::scan_params(&mut c, |_, _| {}).is_ok()
            && c.at_end()
            && Host::check(p.host).is_ok()
    }
}

/// A Via value read in place, without making a [`Via`]: for a value written in the form
/// [`Via`]'s `Display` writes it (`SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport`: one
/// space, no other whitespace, no quoted value, an IPv4 address or a name as sent-by, a port
/// without leading zeros), which is how user agents write their Via. What a UAS reads of a
/// request's top Via to answer it (RFC 3261 §18.2.1, §18.2.2, RFC 3581), each answer the
/// same as the parsed [`Via`]'s, without the allocations of a parse.
///
/// ```
/// let msg = sipua_message::Message::parse(
///     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
///       Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK776asdhds;rport\r\n\
///       From: <sip:alice@example.com>;tag=1928301774\r\n\
///       To: <sip:bob@example.com>\r\n\
///       Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n",
/// ).unwrap();
/// let via = msg.top_via_text().unwrap();
/// assert_eq!(via.rport(), Some(None));
/// assert_eq!(via.port_or_default(), 5070);
/// assert_eq!(
///     via.to_string_with(&[("received", Some("192.0.2.9")), ("rport", Some("5071"))]),
///     msg.top_via().unwrap().to_string_with(&[("received", Some("192.0.2.9")), ("rport", Some("5071"))]),
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ViaText<'a> {
    /// The whole value (ASCII).
    text: &'a [u8],
    at: ViaAt,
}

/// Where the parts of a Via value read in place are, from its first byte: what a message
/// keeps so that reading its top Via again costs nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViaAt {
    /// Where the parameters start.
    params_at: u32,
    /// sent-by, when an IPv4 address.
    ipv4: Option<Ipv4Addr>,
    port: Option<u16>,
    default_port: u16,
    /// The first `rport` and the first `maddr` parameter, each with its value if it has one.
    rport: Option<Option<(u32, u32)>>,
    maddr: Option<Option<(u32, u32)>>,
}

impl<'a> ViaText<'a> {
    /// The value `text` with the parts [`ViaText::read`] found in it.
    pub(crate) fn new(text: &'a [u8], at: ViaAt) -> ViaText<'a> {
        ViaText { text, at }
    }

    /// The transport of the sent-protocol (`SIP/2.0/TLS` gives `TLS`), upper case.
    pub fn transport(&self) -> Transport {
        // `SIP/2.0/` then the transport, then one space (what `read` checked)
        let rest = self.text.get(8..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        Transport::parse(&rest[..end])
    }

    /// Reads `value` (one Via value, no commas, no outer whitespace) when it is in the form
    /// described above and parses in full; `None` otherwise.
    pub(crate) fn read(value: &[u8]) -> Option<ViaAt> {
        if value.len() > u32::MAX as usize {
            return None;
        }
        let mut c = Cursor::new(value);
        let p = ViaParts::split(&mut c).ok()?;
        let at = |sub: &[u8]| sub.as_ptr() as usize - value.as_ptr() as usize;
        // `SIP/2.0/` and the transport in upper case (as `Transport` writes it), one space,
        // then sent-by: a name or an IPv4 address (which the split checked as `Host::parse`
        // does), written as it is written back
        let host_at = 8 + p.transport.len() + 1;
        if !value.starts_with(b"SIP/2.0/")
            || at(p.transport) != 8
            || p.transport.iter().any(u8::is_ascii_lowercase)
            || value.get(host_at - 1) != Some(&b' ')
            || at(p.host) != host_at
            || p.host.first() == Some(&b'[')
        {
            return None;
        }
        let host_end = host_at + p.host.len();
        // the port right after a colon, without blanks or leading zeros: then the cursor is
        // exactly as far as its decimal form is long
        let params_at = match p.port {
            None => host_end,
            Some(port) => {
                let mut digits = 1;
                let mut n = port;
                while n >= 10 {
                    n /= 10;
                    digits += 1;
                }
                if value.get(host_end) != Some(&b':') {
                    return None;
                }
                host_end + 1 + digits
            }
        };
        if c.pos != params_at {
            return None;
        }
        // parameters `;name` or `;name=value`, each right after the previous one, no quotes
        let mut end = params_at;
        let mut plain = true;
        let mut rport = None;
        let mut maddr = None;
        crate::params::scan_params(&mut c, |name, v| {
            let name_at = at(name);
            plain &= name_at == end + 1;
            end = name_at + name.len();
            let value = match v {
                Some((v, quoted)) => {
                    plain &= !quoted && at(v) == end + 1;
                    end = at(v) + v.len();
                    Some((at(v) as u32, end as u32))
                }
                None => None,
            };
            if rport.is_none() && name.eq_ignore_ascii_case(b"rport") {
                rport = Some(value);
            } else if maddr.is_none() && name.eq_ignore_ascii_case(b"maddr") {
                maddr = Some(value);
            }
        })
        .ok()?;
        // (then every byte is ASCII: sent-protocol, token, host, digits, parameter characters)
        if !plain || end != value.len() || c.pos != end {
            return None;
        }
        let ipv4 = if p.host.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            Some(crate::uri::parse_ipv4(p.host)?)
        } else {
            None
        };
        Some(ViaAt {
            params_at: params_at as u32,
            ipv4,
            port: p.port,
            default_port: match p.transport {
                b"TLS" | b"WSS" => 5061,
                _ => 5060,
            },
            rport,
            maddr,
        })
    }

    /// A parameter value found by [`ViaText::read`], as text.
    fn value(&self, at: (u32, u32)) -> Option<&'a str> {
        let bytes = self.text.get(at.0 as usize..at.1 as usize)?;
        std::str::from_utf8(bytes).ok()
    }

    /// The value as written (and as [`Via`]'s `Display` writes it).
    pub fn as_str(&self) -> &'a str {
        // ASCII, as read
        std::str::from_utf8(self.text).unwrap_or_default()
    }

    /// The sent-by address when it is an IP address ([`Host::ip`] of [`Via::host`]).
    pub fn host_ip(&self) -> Option<IpAddr> {
        self.at.ipv4.map(IpAddr::V4)
    }

    /// sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.at.port
    }

    /// sent-by port or the transport's default ([`Via::port_or_default`]).
    pub fn port_or_default(&self) -> u16 {
        self.at.port.unwrap_or(self.at.default_port)
    }

    /// The `rport` parameter ([`Via::rport`]).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.at
            .rport
            .map(|v| v.and_then(|v| self.value(v)?.parse().ok()))
    }

    /// The `maddr` parameter ([`Via::maddr`]).
    pub fn maddr(&self) -> Option<Host> {
        self.at
            .maddr
            .flatten()
            .and_then(|v| Host::parse_lenient(self.value(v)?.as_bytes()).ok())
    }

    /// The value with parameters set: what [`Via::to_string_with`] writes for the parsed
    /// value.
    pub fn to_string_with(&self, params: &[(&str, Option<&str>)]) -> String {
        let text = self.as_str();
        let params_at = (self.at.params_at as usize).min(text.len());
        let mut s = String::with_capacity(text.len() + 40);
        s.push_str(&text[..params_at]);
        // `;name` or `;name=value`: no quotes, and neither `;` nor `=` inside a name or value
        let raw = text[params_at..].split(';').skip(1).map(|p| {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            (name, value, false)
        });
        let _ = crate::params::write_params_with(&mut s, raw, params);
        s
    }
}

fn bad(reason: &'static str) -> ParseError {
    ParseError::in_header(ErrorKind::HeaderValue, "Via", reason)
}

/// A Via value cut into raw parts and checked, without allocating.
pub(crate) struct ViaParts<'a> {
    pub name: &'a [u8],
    pub version: &'a [u8],
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The `branch` parameter, raw (filled by [`ViaParts::check`]).
    pub branch: Option<&'a [u8]>,
}

impl<'a> ViaParts<'a> {
    /// sent-protocol and sent-by; leaves the cursor before the parameters.
    fn split(c: &mut Cursor<'a>) -> Result<ViaParts<'a>> {
        c.skip_ws();
        if c.rest().starts_with(b"SIP/2.0/") {
            // the spelling every peer uses
            let (name, version) = (&c.rest()[..3], &c.rest()[4..7]);
            c.pos += 8;
            return ViaParts::split_transport(c, name, version);
        }
        let name = c.token().ok_or_else(|| bad("bad sent-protocol"))?;
        if !c.eat_sep(b'/') {
            return Err(bad("bad sent-protocol"));
        }
        c.skip_ws();
        let version = c.token().ok_or_else(|| bad("bad sent-protocol"))?;
        if !c.eat_sep(b'/') {
            return Err(bad("bad sent-protocol"));
        }
        c.skip_ws();
        ViaParts::split_transport(c, name, version)
    }

    /// From the transport token to the end of sent-by.
    fn split_transport(
        c: &mut Cursor<'a>,
        name: &'a [u8],
        version: &'a [u8],
    ) -> Result<ViaParts<'a>> {
        let transport = c.token().ok_or_else(|| bad("bad transport"))?;
        let before = c.pos;
        c.skip_ws();
        if c.pos == before {
            return Err(bad("missing sent-by"));
        }
        let host = if c.peek() == Some(b'[') {
            let start = c.pos;
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err(bad("bad IPv6 reference"));
            }
            let host = &c.s[start..c.pos];
            Host::check(host).map_err(|_| bad("bad sent-by host"))?;
            host
        } else {
            let rest = c.rest();
            let n = Host::name_run(rest).ok_or_else(|| bad("bad sent-by host"))?;
            c.pos += n;
            &rest[..n]
        };
        let port = if c.eat_sep(b':') {
            c.skip_ws();
            // digits, leading zeros allowed, up to 65535 (the value saturates above)
            let rest = c.rest();
            let mut n = 0;
            let mut port = 0u32;
            for &b in rest {
                if !b.is_ascii_digit() {
                    break;
                }
                port = (port * 10 + u32::from(b - b'0')).min(1 << 20);
                n += 1;
            }
            c.pos += n;
            if n == 0 || port > u32::from(u16::MAX) {
                return Err(bad("bad sent-by port"));
            }
            Some(port as u16)
        } else {
            None
        };
        Ok(ViaParts {
            name,
            version,
            transport,
            host,
            port,
            branch: None,
        })
    }

    /// Checks the first Via of a header value (which may hold several, comma-separated) and
    /// returns its parts with the branch: the same answer as [`ViaParts::check`] on the first
    /// element of the list, and the same error.
    pub(crate) fn check_first(value: &'a [u8]) -> Result<ViaParts<'a>> {
        // fast path: parse the value as it is; a Via has no comma and no '<' outside its
        // quoted strings, so if it parses up to the end or a comma, that is the first element
        let mut c = Cursor::new(value);
        if let Ok(mut p) = ViaParts::split(&mut c) {
            if let Ok(branch) =
                crate::params::find_token_param(&mut c, b"branch", "branch is not a token")
            {
                c.skip_ws();
                if matches!(c.peek(), None | Some(b',')) {
                    p.branch = branch;
                    return Ok(p);
                }
            }
        }
        let top = scan::split_commas(value).next().unwrap_or_default();
        if top.is_empty() {
            return Err(bad("empty value"));
        }
        ViaParts::check(top)
    }

    /// Checks a whole Via value (no commas) and returns its parts with the branch.
    pub(crate) fn check(s: &'a [u8]) -> Result<ViaParts<'a>> {
        let mut c = Cursor::new(s);
        let mut p = ViaParts::split(&mut c)?;
        let branch = crate::params::find_token_param(&mut c, b"branch", "branch is not a token")
            .map_err(|e| e.with_header("Via"))?;
        if !c.at_end() {
            return Err(bad("unexpected text"));
        }
        p.branch = branch;
        Ok(p)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Via {
    /// Writes the Via value as [`fmt::Display`] does, into any [`fmt::Write`].
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        self.write_sent_by(f)?;
        self.params.write_to(f)
    }

    /// This Via as text with `params` set as [`Params::set`] would set them, in order, on a
    /// copy, without making the copy: what a UAS puts in its responses, the request's Via with
    /// `received` and `rport` (RFC 3261 §18.2.1, RFC 3581 §4). At most 8 parameters.
    ///
    /// ```
    /// use sipua_message::Via;
    /// let v: Via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport".parse().unwrap();
    /// let text = v.to_string_with(&[("received", Some("192.0.2.9")), ("rport", Some("5070"))]);
    /// assert_eq!(text, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5070;received=192.0.2.9");
    /// ```
    pub fn to_string_with(&self, params: &[(&str, Option<&str>)]) -> String {
        let mut s = String::with_capacity(96);
        let _ = self.write_sent_by(&mut s);
        let _ = self.params.write_with_all(&mut s, params);
        s
    }

    /// `SIP/2.0/UDP host:port`, what comes before the parameters.
    fn write_sent_by<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        // write_str rather than write!: Via is written for every request sent
        f.write_str(&self.protocol)?;
        f.write_str("/")?;
        f.write_str(self.transport.as_str())?;
        f.write_str(" ")?;
        self.host.write_to(f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            scan::write_decimal(f, u32::from(p))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Via {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Via> {
        Via::parse(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_parameters_set_is_a_copy_with_them_set_written() {
        let sets: [&[(&str, Option<&str>)]; 4] = [
            &[("received", Some("192.0.2.9"))],
            &[("received", Some("192.0.2.9")), ("rport", Some("5070"))],
            &[("RPORT", Some("1")), ("x", None), ("y", Some("a b"))],
            &[("received", Some("2001:db8::1")), ("branch", Some(""))],
        ];
        for via in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/TCP h.example.com;Received=1.2.3.4;branch=z9hG4bK2;rport=1;rport",
            "SIP/2.0/UDP [2001:db8::2];branch=z9hG4bK3;x=\"q\"",
            "SIP/2.0/UDP h",
        ] {
            let v: Via = via.parse().unwrap();
            for set in sets {
                let mut copy = v.clone();
                for (name, value) in set {
                    copy.params.set(name, *value);
                }
                assert_eq!(v.to_string_with(set), copy.to_string(), "{via} {set:?}");
            }
        }
    }

    #[test]
    fn folded_and_spaced_via() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.protocol, "SIP/2.0");
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8"
        );
    }

    #[test]
    fn rport_received_and_ipv6() {
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3;received=[2001:db8::9:255];rport",
        )
        .unwrap();
        assert_eq!(v.port, Some(6050));
        assert_eq!(
            v.received(),
            Some(Host::Ipv6("2001:db8::9:255".parse().unwrap()))
        );
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(b"SIP/2.0/UDP h;rport=5062;received=2001:db8::9:255").unwrap();
        assert_eq!(v.rport(), Some(Some(5062)));
        assert!(v.received().is_some());
    }

    #[test]
    fn read_in_place_answers_as_the_parsed_via() {
        let sets: [&[(&str, Option<&str>)]; 3] = [
            &[("received", Some("192.0.2.9"))],
            &[("received", Some("192.0.2.9")), ("rport", Some("5070"))],
            &[("RPORT", Some("1")), ("x", None), ("y", Some("a b"))],
        ];
        // (value, whether it is in the form read in place)
        for (via, canonical) in [
            ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", true),
            ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", true),
            (
                "SIP/2.0/TLS h.example.com;RPORT=7;maddr=239.1.1.1;rport",
                true,
            ),
            ("SIP/2.0/WSS h;maddr;ttl=1;received=[2001:db8::1]", true),
            ("SIP/2.0/XYZ 10.0.0.1:0;rport=x", true),
            ("SIP/2.0/UDP h:65535", true),
            ("SIP/2.0/UDP 192.0.2.1:05060;branch=z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1: 5060;branch=z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1 :5060", false),
            ("SIP/2.0/UDP 192.0.2.1 ;branch=z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1; branch=z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1;branch =z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1;branch= z9hG4bK1", false),
            ("SIP/2.0/UDP 192.0.2.1;x=\"q\"", false),
            ("SIP/2.0/udp 192.0.2.1", false),
            ("SIP/2.0/UDP  192.0.2.1", false),
            ("SIP / 2.0/UDP 192.0.2.1", false),
            ("sip/2.0/UDP 192.0.2.1", false),
            ("SIP/2.0/UDP [2001:db8::1]:5060", false),
            ("SIP/2.0/UDP 192.0.2.1;;", false),
            ("SIP/2.0/UDP 192.0.2.1 x", false),
            ("SIP/2.0/UDP 192.0.2.300", false),
        ] {
            let read = ViaText::read(via.as_bytes()).map(|at| ViaText::new(via.as_bytes(), at));
            assert_eq!(read.is_some(), canonical, "{via}");
            let Some(t) = read else { continue };
            let v = Via::parse(via.as_bytes()).unwrap();
            assert_eq!(t.as_str(), v.to_string(), "{via}");
            assert_eq!(t.host_ip(), v.host.ip(), "{via}");
            assert_eq!(t.port(), v.port, "{via}");
            assert_eq!(t.port_or_default(), v.port_or_default(), "{via}");
            assert_eq!(t.rport(), v.rport(), "{via}");
            assert_eq!(t.maddr(), v.maddr(), "{via}");
            for set in sets {
                assert_eq!(
                    t.to_string_with(set),
                    v.to_string_with(set),
                    "{via} {set:?}"
                );
            }
        }
    }

    #[test]
    fn read_in_place_only_when_every_via_parses() {
        let msg = |vias: &str| {
            crate::Message::parse(
                format!(
                    "OPTIONS sip:b@example.com SIP/2.0\r\n{vias}From: <sip:a@example.com>;tag=1\r\n\
                     To: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        for (vias, read) in [
            ("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", true),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP g\r\nVia: SIP/2.0/UDP f\r\n",
                true,
            ),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP g;;\r\n",
                false,
            ),
            ("Via: SIP/2.0/UDP h;branch=z9hG4bK1,\r\n", false),
            (
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP [::1\r\n",
                false,
            ),
            ("Via: SIP/2.0/UDP h ;branch=z9hG4bK1\r\n", false),
        ] {
            let m = msg(vias);
            assert_eq!(m.top_via_text().is_some(), read, "{vias}");
            assert_eq!(m.validate_quick().is_ok(), m.via().is_ok(), "{vias}");
            if let Some(t) = m.top_via_text() {
                assert_eq!(t.as_str(), m.top_via().unwrap().to_string());
            }
        }
    }

    #[test]
    fn malformed_vias() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0 host",
            b"SIP/2.0/UDP host:99999",
            b"",
        ] {
            assert!(Via::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
