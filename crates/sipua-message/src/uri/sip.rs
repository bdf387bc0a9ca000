//! `sip:` and `sips:` URIs (RFC 3261 §19.1): their parts checked without allocating
//! ([`SipParts`]), parsed, compared (§19.1.4) and written with the escapes the grammar needs.

use super::*;

impl SipUri {
    /// A `sip:` URI with just a host.
    pub fn new(host: Host) -> SipUri {
        SipUri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host,
            port: None,
            params: UriParams::default(),
            headers: Vec::new(),
        }
    }

    /// Parses a `sip:`/`sips:` URI.
    pub fn parse(s: &[u8]) -> Result<SipUri> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(err("not a sip or sips URI")),
        }
    }

    pub(super) fn parse_rest(scheme: Scheme, s: &[u8]) -> Result<SipUri> {
        let p = SipParts::split(s)?;
        let user = p
            .user
            .map(|u| decode(u, is_user_char, "bad character in user part"))
            .transpose()?;
        let password = p
            .password
            .map(|u| decode(u, is_password_char, "bad character in password"))
            .transpose()?;
        // the host was checked by the split: an IPv4 address is read without a second scan
        let host = if let Some(a) = p.ipv4 {
            Host::Ipv4(a)
        } else {
            Host::parse(p.host)?
        };
        let mut params = Vec::new();
        if !p.params.is_empty() {
            for param in p.params.split(|&b| b == b';') {
                let (n, v) = split_eq(param);
                let n = decode(n, is_param_char, "bad character in URI parameter")?;
                let v = v
                    .map(|v| decode(v, is_param_char, "bad character in URI parameter"))
                    .transpose()?;
                params.push((n, v));
            }
        }
        let mut headers = Vec::new();
        if !p.headers.is_empty() {
            for h in p.headers.split(|&b| b == b'&') {
                let (n, v) = split_eq(h);
                let n = decode(n, is_header_char, "bad character in URI header")?;
                let v = decode(
                    v.unwrap_or_default(),
                    is_header_char,
                    "bad character in URI header",
                )?;
                headers.push((n, v));
            }
        }
        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            port: p.port,
            params: UriParams(params),
            headers,
        })
    }

    /// The `transport` parameter, lower-cased by the caller if needed.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Whether the `lr` parameter is present (a loose router, RFC 3261 §16.4).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.value("maddr")
    }

    /// Comparison per RFC 3261 §19.1.4.
    pub fn equivalent(&self, o: &SipUri) -> bool {
        if self.scheme != o.scheme
            || self.user != o.user
            || self.password != o.password
            || !self.host.equivalent(&o.host)
            || self.port != o.port
        {
            return false;
        }
        // user, ttl, method, maddr and transport must match, present in one means present in both
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            match (self.params.get(name), o.params.get(name)) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    if !opt_eq_ci(a, b) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        // any other parameter appearing in both must match (all its occurrences, in order)
        let values = |p: &'_ UriParams, name: &str| -> Vec<Option<String>> {
            p.0.iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_ref().map(|v| v.to_ascii_lowercase()))
                .collect()
        };
        for (n, _) in &self.params.0 {
            let theirs = values(&o.params, n);
            if !theirs.is_empty() && values(&self.params, n) != theirs {
                return false;
            }
        }
        // headers: all must be present in both and match
        if self.headers.len() != o.headers.len() {
            return false;
        }
        self.headers.iter().all(|(n, v)| {
            o.headers
                .iter()
                .any(|(m, w)| n.eq_ignore_ascii_case(m) && v == w)
        })
    }
}

/// A `sip:`/`sips:` URI cut into its raw (still escaped) parts and fully checked, without
/// allocating.
pub(crate) struct SipParts<'a> {
    pub user: Option<&'a [u8]>,
    pub password: Option<&'a [u8]>,
    pub host: &'a [u8],
    /// The host as an IPv4 address, when it is one (read by the check).
    pub ipv4: Option<Ipv4Addr>,
    pub port: Option<u16>,
    /// Parameters after the first `;`, without it (empty when none).
    pub params: &'a [u8],
    /// Headers after `?`, without it (empty when none).
    pub headers: &'a [u8],
}

pub(super) fn split_eq(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'=', s) {
        Some(e) => (&s[..e], Some(&s[e + 1..])),
        None => (s, None),
    }
}

impl<'a> SipParts<'a> {
    /// Splits and checks what follows `sip:`.
    pub(crate) fn split(s: &'a [u8]) -> Result<SipParts<'a>> {
        let (user, password, hostpart) = match s.iter().position(|&b| b == b'@') {
            Some(at) => {
                let userinfo = &s[..at];
                let (u, p) = match userinfo.iter().position(|&b| b == b':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if u.is_empty() {
                    return Err(err("empty user part"));
                }
                check(u, &USER, "bad character in user part")?;
                if let Some(p) = p {
                    check(p, &PASSWORD, "bad character in password")?;
                }
                (Some(u), p, &s[at + 1..])
            }
            None => (None, None, s),
        };
        // hostport ends at the first ';' or '?' (IPv6 references may hold ':' but not those)
        let end = hostpart
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(hostpart.len());
        let hostport = &hostpart[..end];
        let (host, port) = if hostport.first() == Some(&b'[') {
            let close = memchr::memchr(b']', hostport).ok_or(err("bad IPv6 reference"))?;
            let after = &hostport[close + 1..];
            let port = match after.split_first() {
                None => None,
                Some((b':', p)) => Some(parse_port(p)?),
                Some(_) => return Err(err("junk after IPv6 reference")),
            };
            (&hostport[..=close], port)
        } else {
            match memchr::memchr(b':', hostport) {
                Some(c) => (&hostport[..c], Some(parse_port(&hostport[c + 1..])?)),
                None => (hostport, None),
            }
        };
        let ipv4 = Host::check_ipv4(host)?;
        let mut rest = &hostpart[end..];
        let mut params: &[u8] = &[];
        if rest.first() == Some(&b';') {
            let pend = memchr::memchr(b'?', rest).unwrap_or(rest.len());
            params = &rest[1..pend];
            for p in params.split(|&b| b == b';') {
                let (n, v) = split_eq(p);
                if n.is_empty() {
                    return Err(err("empty URI parameter"));
                }
                check(n, &PARAM, "bad character in URI parameter")?;
                if let Some(v) = v {
                    check(v, &PARAM, "bad character in URI parameter")?;
                }
            }
            rest = &rest[pend..];
        }
        let mut headers: &[u8] = &[];
        if rest.first() == Some(&b'?') {
            headers = &rest[1..];
            for h in headers.split(|&b| b == b'&') {
                match split_eq(h) {
                    (n, Some(v)) if !n.is_empty() => {
                        check(n, &HEADER, "bad character in URI header")?;
                        check(v, &HEADER, "bad character in URI header")?;
                    }
                    _ => return Err(err("URI header is not name=value")),
                }
            }
        }
        Ok(SipParts {
            user,
            password,
            host,
            ipv4,
            port,
            params,
            headers,
        })
    }
}

/// Checks a URI as [`Uri::parse`] would accept it, without allocating.
pub(crate) fn check_uri(s: &[u8]) -> Result<()> {
    let colon = memchr::memchr(b':', s).ok_or(err("missing URI scheme"))?;
    let scheme = &s[..colon];
    let rest = &s[colon + 1..];
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        SipParts::split(rest).map(|_| ())
    } else {
        // tel and absolute URIs are rare enough to take the allocating path
        Uri::parse(s).map(|_| ())
    }
}

pub(super) fn opt_eq_ci(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

pub(super) fn parse_port(p: &[u8]) -> Result<u16> {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return Err(err("bad port"));
    }
    scan::parse_u32(p)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(err("bad port"))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl SipUri {
    /// Writes the URI as [`fmt::Display`] does, into any [`fmt::Write`].
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(u) = &self.user {
            encode(f, u, is_user_char)?;
            if let Some(p) = &self.password {
                f.write_str(":")?;
                encode(f, p, is_password_char)?;
            }
            f.write_str("@")?;
        }
        self.host.write_to(f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            scan::write_decimal(f, u32::from(p))?;
        }
        write_uri_params(f, &self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            encode(f, n, is_header_char)?;
            f.write_str("=")?;
            encode(f, v, is_header_char)?;
        }
        Ok(())
    }
}

pub(super) fn write_uri_params<W: fmt::Write>(f: &mut W, params: &UriParams) -> fmt::Result {
    for (n, v) in &params.0 {
        f.write_str(";")?;
        encode(f, n, is_param_char)?;
        if let Some(v) = v {
            f.write_str("=")?;
            encode(f, v, is_param_char)?;
        }
    }
    Ok(())
}
