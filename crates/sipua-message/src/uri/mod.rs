//! URIs: `sip:` and `sips:` (RFC 3261 §19.1), `tel:` (RFC 3966) and any other absolute URI
//! (RFC 3261 §25.1 `absoluteURI`), with comparison per RFC 3261 §19.1.4 and IPv6 references
//! per RFC 5118.
//!
//! `%HH` escapes are decoded exactly once, when parsing: `user`, `password`, parameter and
//! header names and values hold decoded text, and [`fmt::Display`] escapes what the grammar
//! requires. A URI that only needs to be forwarded is better kept as raw header bytes, which
//! [`crate::Message`] does.
//!
//! By scheme: `sip.rs` (`sip:`/`sips:`), `tel.rs` (`tel:`), `host.rs` (hosts, IPv4 and IPv6);
//! this file holds the model, the escaping rules all share, and other schemes.

mod host;
mod sip;
mod tel;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{ErrorKind, ParseError, Result};
use crate::scan;

pub(crate) use host::parse_ipv4;
pub(crate) use sip::check_uri;
use sip::write_uri_params;

/// Any URI that can appear in a Request-URI, name-addr or addr-spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other scheme, kept opaque (for example `urn:`, `mailto:`, `http:`).
    Absolute(AbsoluteUri),
}

/// `sip:` versus `sips:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS on every hop, RFC 3261 §19.1.1).
    Sips,
}

/// A `sip:`/`sips:` URI, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// User part, %-decoded (may contain `;`, `?`, even NUL).
    pub user: Option<String>,
    /// Password, %-decoded (deprecated by RFC 3261, but part of the grammar).
    pub password: Option<String>,
    /// Host: domain name, IPv4 or IPv6 address.
    pub host: Host,
    /// Explicit port. `None` is not the same as 5060 when comparing (RFC 3261 §19.1.4).
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), %-decoded.
    pub params: UriParams,
    /// URI headers (`?Subject=x&Route=...`), %-decoded.
    pub headers: Vec<(String, String)>,
}

/// A host as in RFC 3261 §25.1 `host`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, as written (compare case-insensitively).
    Domain(String),
    /// A dotted IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (written in brackets in URIs and Via).
    Ipv6(Ipv6Addr),
}

/// A `tel:` URI (RFC 3966): a global (`+1-201-555-0123`) or local number with parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    /// The number as written, visual separators included.
    pub number: String,
    /// Parameters such as `phone-context`.
    pub params: UriParams,
}

/// A URI of a scheme we do not interpret, kept as `scheme:rest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteUri {
    /// The scheme, as written.
    pub scheme: String,
    /// Everything after the first colon.
    pub rest: String,
}

/// URI parameters: `name[=value]` pairs, %-decoded, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UriParams(pub Vec<(String, Option<String>)>);

impl UriParams {
    /// `Some(None)` for a flag such as `lr`, `Some(Some(v))` for a value, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets or replaces `name`.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        if let Some(p) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            p.1 = value;
        } else {
            self.0.push((name.to_owned(), value));
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn err(reason: &'static str) -> ParseError {
    ParseError::new(ErrorKind::Uri, reason)
}

// Character classes of RFC 3261 §25.1 as lookup tables over unescaped octets.
const fn class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

type Class = [bool; 256];
// `#` is not in the grammar, but dial strings such as `*67#123` are common in the wild.
static USER: Class = class(b"&=+$,;?/#");
static PASSWORD: Class = class(b"&=+$,");
static PARAM: Class = class(b"[]/:&+$");
static HEADER: Class = class(b"[]/?:+$");

fn is_user_char(b: u8) -> bool {
    USER[b as usize]
}
fn is_password_char(b: u8) -> bool {
    PASSWORD[b as usize]
}
fn is_param_char(b: u8) -> bool {
    PARAM[b as usize]
}
fn is_header_char(b: u8) -> bool {
    HEADER[b as usize]
}

static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() || b == b'.' {
            1
        } else if b.is_ascii_alphabetic() || b == b'-' || b == b'_' {
            2
        } else {
            0
        };
        c += 1;
    }
    t
};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks `s` against a character class (with `%HH` escapes) and decodes it once.
fn decode(s: &[u8], allowed: fn(u8) -> bool, what: &'static str) -> Result<String> {
    if !s.contains(&b'%') {
        if s.iter().all(|&b| allowed(b)) {
            return Ok(scan::string(s));
        }
        return Err(err(what));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let h = s.get(i + 1).copied().and_then(hex);
            let l = s.get(i + 2).copied().and_then(hex);
            match (h, l) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(err("bad %-escape")),
            }
            i += 3;
        } else if allowed(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(err(what));
        }
    }
    Ok(String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Checks `s` against a character class with `%HH` escapes, without decoding.
#[inline]
fn check(s: &[u8], allowed: &Class, what: &'static str) -> Result<()> {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if allowed[b as usize] {
            i += 1;
        } else if b == b'%' {
            if s.get(i + 1).copied().and_then(hex).is_none()
                || s.get(i + 2).copied().and_then(hex).is_none()
            {
                return Err(err("bad %-escape"));
            }
            i += 3;
        } else {
            return Err(err(what));
        }
    }
    Ok(())
}

/// Writes `s`, %-escaping `%`, `#` and every octet outside `allowed`.
fn encode<W: fmt::Write>(f: &mut W, s: &str, allowed: fn(u8) -> bool) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !allowed(b) || b == b'%' || b == b'#' {
            // the run before `i` holds only allowed (ASCII) octets: when not empty, it starts
            // and ends at character boundaries
            if start < i {
                f.write_str(s.get(start..i).ok_or(fmt::Error)?)?;
            }
            write!(f, "%{b:02X}")?;
            start = i + 1;
        }
    }
    // (a non-empty rest starts with an allowed ASCII octet)
    if start < bytes.len() {
        f.write_str(s.get(start..).ok_or(fmt::Error)?)?;
    }
    Ok(())
}

impl Uri {
    /// Parses a URI that spans the whole of `s` (no surrounding whitespace or brackets).
    pub fn parse(s: &[u8]) -> Result<Uri> {
        let colon = memchr::memchr(b':', s).ok_or(err("missing URI scheme"))?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        if scheme.eq_ignore_ascii_case(b"sip") {
            SipUri::parse_rest(Scheme::Sip, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse_rest(Scheme::Sips, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            TelUri::parse_rest(rest).map(Uri::Tel)
        } else {
            let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
                && scheme
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            if !valid_scheme {
                return Err(err("bad URI scheme"));
            }
            if rest.is_empty()
                || rest
                    .iter()
                    .any(|&b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
            {
                return Err(err("bad character in URI"));
            }
            Ok(Uri::Absolute(AbsoluteUri {
                scheme: scan::string(scheme),
                rest: scan::string(rest),
            }))
        }
    }

    /// The SIP URI inside, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Mutable access to the SIP URI inside, if this is one.
    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme in lower case (`sip`, `sips`, `tel`, or as written for others).
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.scheme == Scheme::Sips => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Absolute(a) => &a.scheme,
        }
    }

    /// URI comparison as RFC 3261 §19.1.4 (sip/sips) and RFC 3966 §4 (tel) define it.
    pub fn equivalent(&self, other: &Uri) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => a.equivalent(b),
            (Uri::Absolute(a), Uri::Absolute(b)) => {
                a.scheme.eq_ignore_ascii_case(&b.scheme) && a.rest == b.rest
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Uri> {
        Uri::parse(s.as_bytes())
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Uri {
        Uri::Sip(u)
    }
}

impl fmt::Display for AbsoluteUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme, self.rest)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Uri {
    /// Whether `bytes` is this URI as its `Display` writes it, told without writing it out.
    pub fn is_written_as(&self, bytes: &[u8]) -> bool {
        /// Takes what is written off the front of `rest`, failing at the first difference.
        struct Compare<'a> {
            rest: &'a [u8],
        }
        impl fmt::Write for Compare<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.rest = self.rest.strip_prefix(s.as_bytes()).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut c = Compare { rest: bytes };
        self.write_to(&mut c).is_ok() && c.rest.is_empty()
    }

    /// Appends the URI to `out` as [`fmt::Display`] writes it, without a `Formatter` in
    /// between: what keeps a URI written rather than parsed (a dialog's remote target).
    pub fn write_into(&self, out: &mut String) {
        let _ = self.write_to(out);
    }

    /// Writes the URI as [`fmt::Display`] does, into any [`fmt::Write`].
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.write_to(f),
            Uri::Tel(u) => write!(f, "{u}"),
            Uri::Absolute(u) => write!(f, "{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        SipUri::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_reads_as_the_standard_library_reads_it() {
        // every string of up to 7 characters over digits and dots that matter, and longer ones
        let alphabet = b"0125.9";
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        let mut all = Vec::new();
        for _ in 0..7 {
            let mut next = Vec::new();
            for c in &cases {
                for &a in alphabet {
                    let mut n = c.clone();
                    n.push(a);
                    next.push(n);
                }
            }
            all.extend(next.iter().cloned());
            cases = next;
        }
        for extra in [
            "192.0.2.1",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3.04",
            "01.2.3.4",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "0.0.0.0",
            "1.2.3.4444",
            "100.200.250.199",
        ] {
            all.push(extra.as_bytes().to_vec());
        }
        for s in all {
            let std: Option<Ipv4Addr> = std::str::from_utf8(&s).unwrap().parse().ok();
            assert_eq!(parse_ipv4(&s), std, "{}", String::from_utf8_lossy(&s));
        }
    }

    #[test]
    fn written_form_compared_without_writing() {
        for text in [
            "sip:bob@192.0.2.2:5060",
            "sips:alice@example.com;transport=tcp?subject=x",
            "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
            "tel:+1-201-555-0123",
            "urn:service:sos",
        ] {
            let u: Uri = text.parse().unwrap();
            let written = u.to_string();
            assert!(u.is_written_as(written.as_bytes()), "{text}");
            assert!(!u.is_written_as(&written.as_bytes()[1..]), "{text}");
            assert!(!u.is_written_as(format!("{written}x").as_bytes()), "{text}");
            assert!(!u.is_written_as(b""), "{text}");
        }
    }

    #[test]
    fn escapes_decode_once() {
        let u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.user.as_deref(), Some("caller"));
        assert!(u.lr());
        assert_eq!(u.params.value("name"), Some("value%41"));
        assert_eq!(
            u.to_string(),
            "sip:caller@host5.example.net;lr;name=value%2541"
        );
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.to_string(), "sip:sips%3Auser%40example.com@example.net");
    }

    #[test]
    fn user_part_may_hold_semicolons() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert!(u.params.is_empty());
    }

    #[test]
    fn ipv6_references() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        assert!(SipUri::parse(b"sip:2001:db8::10").is_err());
        let u = sip("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.host, Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn comparison_rules_of_19_1_4() {
        let eq = |a: &str, b: &str| sip(a).equivalent(&sip(b));
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ));
    }

    #[test]
    fn other_schemes() {
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert!(matches!(&u, Uri::Tel(t) if t.is_global()));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let u = Uri::parse(b"nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.scheme(), "nobodyKnowsThisScheme");
        assert!(Uri::parse(b"<sip:a@b>").is_err());
        assert!(Uri::parse(b"sip:a@b c").is_err());
    }
}

#[cfg(test)]
mod ipv4_tests {
    #[test]
    fn host_name_runs_agree_with_check() {
        for s in [
            &b""[..],
            b"a",
            b"1",
            b".",
            b"192.0.2.101",
            b"192.0.2.256",
            b"192.0.2",
            b"192.0.2.1.5",
            b"01.2.3.4",
            b"1..2.3",
            b"host-1_x.example.com",
            b"1.2.3.4a",
            b"999",
            b"example.com.",
        ] {
            let n = super::Host::name_run(s);
            assert_eq!(n.is_some(), super::Host::check(s).is_ok(), "{s:?}");
            assert!(n.is_none_or(|n| n == s.len()));
            // the run stops at the first other byte
            let t = [s, b":5060"].concat();
            assert_eq!(super::Host::name_run(&t), n, "{s:?}");
        }
    }

    #[test]
    fn ipv4_and_port_display_agree_with_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.0.2.1",
            "1.20.3.40",
        ] {
            let a: std::net::Ipv4Addr = s.parse().unwrap();
            assert_eq!(super::Host::Ipv4(a).to_string(), a.to_string());
        }
        for p in (0..=u16::MAX)
            .step_by(7)
            .chain([9, 10, 99, 100, 101, 5060, 65535])
        {
            let mut s = String::new();
            crate::scan::write_decimal(&mut s, u32::from(p)).unwrap();
            assert_eq!(s, p.to_string());
        }
    }

    #[test]
    fn ipv4_check_agrees_with_std() {
        for s in [
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "0.0.0.0",
            "1..2.3",
            "999.1.1.1",
            "10.0.0.010",
        ] {
            assert_eq!(
                super::host::is_ipv4(s.as_bytes()),
                s.parse::<std::net::Ipv4Addr>().is_ok(),
                "{s}"
            );
        }
    }
}
