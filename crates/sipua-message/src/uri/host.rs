//! Hosts of SIP URIs (RFC 3261 §19.1, §25.1 `host`): names, IPv4 (as `Ipv4Addr` reads a
//! dotted quad) and bracketed IPv6 references (RFC 5118), parsed, checked without allocating,
//! compared and written.

use super::*;

impl Host {
    /// Checks a host as [`Host::parse`] does, without allocating.
    pub(crate) fn check(s: &[u8]) -> Result<()> {
        Host::check_ipv4(s).map(|_| ())
    }

    /// [`Host::check`], giving the address when the host is an IPv4 address.
    pub(crate) fn check_ipv4(s: &[u8]) -> Result<Option<Ipv4Addr>> {
        if s.first() == Some(&b'[') {
            if s.last() != Some(&b']') || s.len() < 3 {
                return Err(err("bad IPv6 reference"));
            }
            return parse_ipv6(&s[1..s.len() - 1]).map(|_| None);
        }
        if s.is_empty() {
            return Err(err("empty host"));
        }
        // one pass: 1 for digits and dots, 2 for other host characters, 0 for anything else
        let mut all = 0u8;
        for &b in s {
            let c = HOST_CLASS[b as usize];
            if c == 0 {
                return Err(err("bad character in host"));
            }
            all |= c;
        }
        if all == 1 {
            return parse_ipv4(s).map(Some).ok_or(err("bad IPv4 address"));
        }
        Ok(None)
    }

    /// The run of host characters at the start of `s`, if it is a host name or an IPv4
    /// address (non-empty; a valid IPv4 address if all digits and dots): its length, in one
    /// pass.
    #[inline]
    pub(crate) fn name_run(s: &[u8]) -> Option<usize> {
        let mut all = 0u8;
        let mut n = 0;
        for &b in s {
            let c = HOST_CLASS[b as usize];
            if c == 0 {
                break;
            }
            all |= c;
            n += 1;
        }
        // nothing, or only digits and dots that are not an IPv4 address
        (all == 2 || all == 3 || (all == 1 && is_ipv4(&s[..n]))).then_some(n)
    }

    /// Parses a host: a bracketed IPv6 reference, a dotted IPv4 address or a domain name.
    pub fn parse(s: &[u8]) -> Result<Host> {
        if s.first() == Some(&b'[') {
            if s.last() != Some(&b']') || s.len() < 3 {
                return Err(err("bad IPv6 reference"));
            }
            return parse_ipv6(&s[1..s.len() - 1]).map(Host::Ipv6);
        }
        if s.is_empty() {
            return Err(err("empty host"));
        }
        // one pass: 1 for digits and dots, 2 for other host characters, 0 for anything else
        let mut all = 0u8;
        for &b in s {
            let c = HOST_CLASS[b as usize];
            if c == 0 {
                return Err(err("bad character in host"));
            }
            all |= c;
        }
        if all == 1 {
            // all digits and dots: must be a valid IPv4 address
            return parse_ipv4(s).map(Host::Ipv4).ok_or(err("bad IPv4 address"));
        }
        Ok(Host::Domain(scan::string(s)))
    }

    /// Parses a host that may also be a bare IPv6 address (the Via `received` and `maddr`
    /// parameters, RFC 5118 §4.5).
    pub fn parse_lenient(s: &[u8]) -> Result<Host> {
        if s.contains(&b':') && s.first() != Some(&b'[') {
            return parse_ipv6(s).map(Host::Ipv6);
        }
        Host::parse(s)
    }

    /// The address, if the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Domain(_) => None,
        }
    }

    /// Compares hosts as RFC 3261 §19.1.4 says: case-insensitive names, equal addresses.
    pub fn equivalent(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            _ => self == other,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

/// Whether `s` (digits and dots only) is a dotted-quad IPv4 address, as `Ipv4Addr` parses it.
/// A dotted-quad IPv4 address as [`Ipv4Addr`]'s `FromStr` reads it (four decimal octets of
/// at most three digits, no leading zero, none above 255), without the string round trip.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    // one pass over the bytes: this runs for every IPv4 host of every message
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value = 0u32;
    let mut digits = 0;
    for &b in s {
        if b == b'.' {
            if digits == 0 || part == 3 {
                return None;
            }
            octets[part] = value as u8;
            part += 1;
            value = 0;
            digits = 0;
        } else {
            let d = b.wrapping_sub(b'0');
            // a digit; at most three; none after a leading zero; at most 255
            if d > 9 || digits == 3 || (digits == 1 && value == 0) {
                return None;
            }
            value = value * 10 + u32::from(d);
            if value > 255 {
                return None;
            }
            digits += 1;
        }
    }
    if digits == 0 || part != 3 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// Whether `s` is a dotted-quad IPv4 address ([`parse_ipv4`]).
pub(super) fn is_ipv4(s: &[u8]) -> bool {
    parse_ipv4(s).is_some()
}

pub(super) fn parse_ipv6(s: &[u8]) -> Result<Ipv6Addr> {
    let t = std::str::from_utf8(s).map_err(|_| err("bad IPv6 address"))?;
    if let Ok(a) = t.parse() {
        return Ok(a);
    }
    // RFC 5118 §4.10: RFC 3261's ABNF admits `:::`; tolerate it as `::`.
    if t.contains(":::") {
        if let Ok(a) = t.replacen(":::", "::", 1).parse() {
            return Ok(a);
        }
    }
    Err(err("bad IPv6 address"))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Host {
    /// Writes the host as [`fmt::Display`] does, into any [`fmt::Write`] (a message buffer
    /// being built, without the formatter).
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => {
                // four octets by hand: the formatter is slow and this runs for every message
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    scan::write_decimal(f, u32::from(o))?;
                }
                Ok(())
            }
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}
