//! `name-addr` and `addr-spec` with header parameters (RFC 3261 §20.10, §25.1): the value of
//! From, To, Contact, Route, Record-Route, Refer-To, Referred-By and P-Asserted-Identity.
//!
//! In the addr-spec form (no angle brackets) every `;param` after the URI belongs to the
//! header, not to the URI (RFC 3261 §20.10). Unquoted display names made of several tokens,
//! with or without a space before `<` (RFC 4475 §3.1.1.6), are accepted.

use std::fmt;

use crate::error::{ErrorKind, ParseError, Result};
use crate::params::Params;
use crate::scan::{self, Cursor};
use crate::uri::Uri;

/// A URI with an optional display name and header parameters (`tag`, `q`, `expires`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted; `None` when absent.
    pub display: Option<String>,
    /// The address.
    pub uri: Uri,
    /// Header parameters after the address.
    pub params: Params,
}

impl NameAddr {
    /// An address with no display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses one `name-addr`/`addr-spec` with parameters; the whole input must be used.
    pub fn parse(s: &[u8]) -> Result<NameAddr> {
        let mut c = Cursor::new(s);
        let na = NameAddr::parse_at(&mut c)?;
        if !c.at_end() {
            return Err(ParseError::new(
                ErrorKind::HeaderValue,
                "unexpected text after address",
            ));
        }
        Ok(na)
    }

    /// [`NameAddr::parse`], then every `tag` parameter removed (as
    /// [`Params::remove`] removes it), without making them.
    pub(crate) fn parse_untagged(s: &[u8]) -> Result<NameAddr> {
        let mut c = Cursor::new(s);
        let na = NameAddr::parse_at_skipping(&mut c, Some(b"tag"))?;
        if !c.at_end() {
            return Err(ParseError::new(
                ErrorKind::HeaderValue,
                "unexpected text after address",
            ));
        }
        Ok(na)
    }

    pub(crate) fn parse_at(c: &mut Cursor<'_>) -> Result<NameAddr> {
        NameAddr::parse_at_skipping(c, None)
    }

    /// [`NameAddr::parse_at`] leaving out the parameters named `skip`.
    fn parse_at_skipping(c: &mut Cursor<'_>, skip: Option<&[u8]>) -> Result<NameAddr> {
        let (display, uri) = split(c)?;
        let display = display.map(|(d, quoted)| {
            if quoted {
                scan::unescape_quoted(d)
            } else {
                scan::string(d)
            }
        });
        let uri = Uri::parse(uri)?;
        let params = Params::parse_skipping(c, skip)?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    /// Sets the `tag` parameter.
    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }
}

/// Checks the structure of one name-addr/addr-spec with parameters without allocating:
/// display name, brackets, a URI with a scheme, well-formed parameters. Returns the raw `tag`
/// value, if any. The URI's own grammar is checked when the address is parsed in full.
pub(crate) fn key_check(s: &[u8]) -> Result<Option<&[u8]>> {
    let mut c = Cursor::new(s);
    let (_, uri) = split(&mut c)?;
    if uri.len() < 2 || scan::find_byte(&uri[1..], b':').is_none() || !uri[0].is_ascii_alphabetic()
    {
        return Err(ParseError::new(ErrorKind::Uri, "missing URI scheme"));
    }
    let tag = crate::params::find_token_param(&mut c, b"tag", "tag is not a token")?;
    if !c.at_end() {
        return Err(ParseError::new(
            ErrorKind::HeaderValue,
            "unexpected text after address",
        ));
    }
    Ok(tag)
}

/// Whether the address `s`, whose structure [`key_check`] accepted when its message was
/// indexed (display name, brackets, parameters, nothing after them), also parses in full:
/// only its URI is then left to check, which [`check_uri`](crate::uri::check_uri) does as
/// [`Uri::parse`] would, without allocating. `false` means "parse it to know".
pub(crate) fn parses_in_full(s: &[u8]) -> bool {
    let mut c = Cursor::new(s);
    match split(&mut c) {
        Ok((_, uri)) => crate::uri::check_uri(uri).is_ok(),
        Err(_) => false,
    }
}

/// Whether `s` parses in full as a Contact value (`*` or an address), told without
/// allocating when it can be: the address's structure and parameters as [`key_check`] walks
/// them, and its URI as [`check_uri`](crate::uri::check_uri) checks it. `false` means "parse
/// it to know" (a `tag` that is not a token, say, which a Contact may have).
pub(crate) fn contact_parses_in_full(s: &[u8]) -> bool {
    if scan::trim(s) == b"*" {
        return true;
    }
    let mut c = Cursor::new(s);
    let Ok((_, uri)) = split(&mut c) else {
        return false;
    };
    crate::uri::check_uri(uri).is_ok()
        && crate::params::find_token_param(&mut c, b"tag", "").is_ok()
        && c.at_end()
}

/// The URI bytes of an address (`name-addr` or `addr-spec`) as [`NameAddr::parse`] takes
/// them apart, without parsing the URI; `None` when the address does not split.
pub(crate) fn uri_bytes(s: &[u8]) -> Option<&[u8]> {
    split(&mut Cursor::new(s)).ok().map(|(_, uri)| uri)
}

/// A display name as written, and whether it was quoted.
type RawDisplay<'a> = (&'a [u8], bool);

/// Splits off the display name (raw, and whether it was quoted) and the URI bytes, leaving the
/// cursor before the header parameters.
fn split<'a>(c: &mut Cursor<'a>) -> Result<(Option<RawDisplay<'a>>, &'a [u8])> {
    c.skip_ws();
    match c.peek() {
        Some(b'"') => {
            let d = c.quoted()?;
            c.skip_ws();
            Ok((Some((d, true)), bracketed(c)?))
        }
        Some(b'<') => Ok((None, bracketed(c)?)),
        Some(_) => {
            let rest = c.rest();
            let lt = rest.iter().position(|&b| b == b'<');
            // an unquoted display name is `*(token LWS)` before `<`
            if let Some(lt) = lt.filter(|&lt| {
                rest[..lt]
                    .iter()
                    .all(|&b| scan::is_token(b) || scan::is_ws(b))
            }) {
                let name = scan::trim(&rest[..lt]);
                c.pos += lt;
                let display = if name.is_empty() {
                    None
                } else {
                    Some((name, false))
                };
                Ok((display, bracketed(c)?))
            } else {
                // addr-spec: the URI ends at the first ';', ',' or whitespace
                let spec = c.take_while(|b| b != b';' && b != b',' && !scan::is_ws(b));
                Ok((None, spec))
            }
        }
        None => Err(ParseError::new(ErrorKind::HeaderValue, "empty address")),
    }
}

fn bracketed<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8]> {
    if !c.eat(b'<') {
        return Err(ParseError::new(ErrorKind::HeaderValue, "expected '<'"));
    }
    let rest = c.rest();
    let Some(close) = scan::find_byte(rest, b'>') else {
        return Err(ParseError::new(ErrorKind::HeaderValue, "missing '>'"));
    };
    let inner = &rest[..close];
    c.pos += close + 1;
    // spaces inside the brackets are not allowed (RFC 4475 §3.1.2.14); tolerate them at the edges
    Ok(scan::trim(inner))
}

impl std::str::FromStr for NameAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<NameAddr> {
        NameAddr::parse(s.as_bytes())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl NameAddr {
    /// Appends the address to `out` as [`fmt::Display`] writes it, without a `Formatter` in
    /// between: what keeps an address written rather than parsed (a dialog's).
    pub fn write_into(&self, out: &mut String) {
        let _ = self.write_to(out);
    }

    /// Writes the address as [`fmt::Display`] does, into any [`fmt::Write`].
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        self.write_address(f)?;
        self.params.write_to(f)
    }

    /// Writes the address with its `tag` parameter set to `tag`, as a copy given
    /// [`NameAddr::set_tag`] would be written, without making the copy.
    pub(crate) fn write_tagged<W: fmt::Write>(&self, f: &mut W, tag: &str) -> fmt::Result {
        self.write_address(f)?;
        self.params.write_with(f, "tag", Some(tag))
    }

    /// The display name and the bracketed URI.
    fn write_address<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        if let Some(d) = &self.display {
            let mut q = String::with_capacity(d.len() + 3);
            scan::write_quoted(&mut q, d);
            q.push(' ');
            f.write_str(&q)?;
        }
        f.write_str("<")?;
        self.uri.write_to(f)?;
        f.write_str(">")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;

    #[test]
    fn written_with_a_tag_is_a_tagged_copy_written() {
        for (addr, tag) in [
            ("<sip:bob@example.com>", "314159"),
            ("\"Bob B\" <sip:bob@example.com>;TAG=old;x=1", "new"),
            ("sip:bob@example.com;x=1;tag=a;tag=b", "c"),
            ("<sip:bob@example.com>", ""),
            ("<sip:bob@example.com>;expires=5", "a b"),
        ] {
            let na = NameAddr::parse(addr.as_bytes()).unwrap();
            let mut copy = na.clone();
            copy.set_tag(tag);
            let mut written = String::new();
            na.write_tagged(&mut written, tag).unwrap();
            assert_eq!(written, copy.to_string(), "{addr} with tag {tag:?}");
        }
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = NameAddr::parse(b"sip:user@host129.example.com;unknownparam").unwrap();
        assert!(na.params.contains("unknownparam"));
        assert!(na.uri.as_sip().unwrap().params.is_empty());
        let na = NameAddr::parse(b"<sip:user@host.example.com;unknownparam>").unwrap();
        assert!(na.params.is_empty());
        assert!(na.uri.as_sip().unwrap().params.contains("unknownparam"));
    }

    #[test]
    fn display_names() {
        let na = NameAddr::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(na.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(na.tag(), Some("98asjd8"));
        let na = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(na.display.as_deref(), Some("caller"));
        let na =
            NameAddr::parse(b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").unwrap();
        assert_eq!(
            na.display.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
        assert_eq!(
            na.uri.as_sip().unwrap().host,
            Host::Domain("example.com".into())
        );
        assert!(NameAddr::parse(br#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(b"Bell, Alexander <sip:a.g.bell@example.com>").is_err());
    }

    #[test]
    fn canonical_output() {
        let na = NameAddr::parse(b"\"A \\\"B\\\"\" <sip:a@b>;tag=1").unwrap();
        assert_eq!(na.to_string(), "\"A \\\"B\\\"\" <sip:a@b>;tag=1");
        assert_eq!(NameAddr::parse(na.to_string().as_bytes()).unwrap(), na);
    }
}
