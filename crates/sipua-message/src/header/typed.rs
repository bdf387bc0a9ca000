//! Typed header values (RFC 3261 §20 and the extensions sipua implements: RFC 3262 RSeq/RAck,
//! RFC 3515 Refer-To, RFC 3892 Referred-By, RFC 3891 Replaces, RFC 4028 Session-Expires/Min-SE,
//! RFC 6665 Event/Subscription-State, RFC 3326 Reason, RFC 3325 P-Asserted-Identity,
//! RFC 7616/8760 digest challenges and credentials).
//!
//! Each type implements [`TypedHeader`]: its name, whether it is a comma-separated list, a parser
//! for one value and `Display` for the canonical form.
//!
//! One concern in one file (about 1 000 lines of code): many small, independent header types
//! side by side, each a struct, a parser and a `Display`.

use std::fmt;

use super::name::HeaderName;
use crate::error::{ErrorKind, ParseError, Result};
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::params::Params;
use crate::scan::{self, Cursor};

/// A header with a typed value.
pub trait TypedHeader: Sized + fmt::Display {
    /// The header's name.
    const NAME: HeaderName;
    /// Whether values are comma-separated and may repeat (RFC 3261 §7.3.1).
    const LIST: bool = false;
    /// Parses one value (one list element for list headers).
    fn parse(value: &[u8]) -> Result<Self>;
}

fn bad(name: &HeaderName, reason: &'static str) -> ParseError {
    ParseError::in_header(ErrorKind::HeaderValue, name.static_name(), reason)
}

/// Parses a whole value that must be exactly one unsigned 32-bit number.
fn delta(name: &HeaderName, s: &[u8]) -> Result<u32> {
    scan::parse_u32(scan::trim(s)).ok_or_else(|| bad(name, "expected a number below 2^32"))
}

/// `CSeq: 4711 INVITE` (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number (below 2^32; RFC 3261 §8.1.1.5 asks for below 2^31 when choosing).
    pub seq: u32,
    /// Method of the request.
    pub method: Method,
}

impl TypedHeader for CSeq {
    const NAME: HeaderName = HeaderName::CSeq;
    fn parse(s: &[u8]) -> Result<CSeq> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let num = c.take_while(|b| b.is_ascii_digit());
        let seq = scan::parse_u32(num)
            .ok_or_else(|| bad(&Self::NAME, "sequence number missing or too large"))?;
        let before = c.pos;
        c.skip_ws();
        if c.pos == before {
            return Err(bad(&Self::NAME, "missing method"));
        }
        let method = c
            .token()
            .ok_or_else(|| bad(&Self::NAME, "missing method"))?;
        if !c.at_end() {
            return Err(bad(&Self::NAME, "unexpected text"));
        }
        let method = Method::parse(method).map_err(|_| bad(&Self::NAME, "bad method"))?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Checks and returns a Call-ID (`word ["@" word]`, RFC 3261 §20.8).
pub fn parse_call_id(s: &[u8]) -> Result<String> {
    check_call_id(s).map(scan::string)
}

/// Checks a Call-ID without allocating; returns it trimmed.
pub(crate) fn check_call_id(s: &[u8]) -> Result<&[u8]> {
    let s = scan::trim(s);
    // word ["@" word]: '@' is not a word character, so the first non-word byte must be the
    // one '@' (not first, not last) and the rest words again
    let ok = match s.iter().position(|&c| !scan::is_word(c)) {
        None => !s.is_empty(),
        Some(i) => {
            s[i] == b'@' && i > 0 && i + 1 < s.len() && s[i + 1..].iter().all(|&c| scan::is_word(c))
        }
    };
    if !ok {
        return Err(ParseError::in_header(
            ErrorKind::HeaderValue,
            "Call-ID",
            "not a word[@word]",
        ));
    }
    Ok(s)
}

/// Parses Max-Forwards (0 to 255).
pub fn parse_max_forwards(s: &[u8]) -> Result<u8> {
    scan::parse_u32(scan::trim(s))
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| {
            ParseError::in_header(ErrorKind::HeaderValue, "Max-Forwards", "expected 0 to 255")
        })
}

macro_rules! delta_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $ty(pub u32);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            fn parse(s: &[u8]) -> Result<$ty> {
                delta(&Self::NAME, s).map($ty)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

delta_header!(
    /// `Expires: 3600` in seconds (RFC 3261 §20.19).
    Expires, Expires);
delta_header!(
    /// `Min-Expires: 60` (RFC 3261 §20.23).
    MinExpires, MinExpires);
delta_header!(
    /// `Content-Length` in octets (RFC 3261 §20.14).
    ContentLength, ContentLength);
delta_header!(
    /// `RSeq: 988789` of a reliable provisional response (RFC 3262 §7.1).
    RSeq, RSeq);
delta_header!(
    /// `Min-SE: 90` (RFC 4028 §5).
    MinSe, MinSe);

macro_rules! name_addr_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident, $list:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub NameAddr);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = $list;
            fn parse(s: &[u8]) -> Result<$ty> {
                NameAddr::parse(s).map($ty).map_err(|e| e.with_header(Self::NAME.static_name()))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

name_addr_header!(
    /// One `Route` entry (RFC 3261 §20.34).
    Route, Route, true);
name_addr_header!(
    /// One `Record-Route` entry (RFC 3261 §20.30).
    RecordRoute, RecordRoute, true);
name_addr_header!(
    /// One `Path` entry (RFC 3327).
    PathEntry, Path, true);
name_addr_header!(
    /// One `Service-Route` entry (RFC 3608).
    ServiceRoute, ServiceRoute, true);
name_addr_header!(
    /// `Refer-To` (RFC 3515 §2.1); the URI may carry an escaped `Replaces` header.
    ReferTo, ReferTo, false);
name_addr_header!(
    /// `Referred-By` (RFC 3892).
    ReferredBy, ReferredBy, false);
name_addr_header!(
    /// One `P-Asserted-Identity` value (RFC 3325).
    PAssertedIdentity, PAssertedIdentity, true);
name_addr_header!(
    /// One `P-Preferred-Identity` value (RFC 3325).
    PPreferredIdentity, PPreferredIdentity, true);

/// One Contact value: an address, or `*` (REGISTER only, RFC 3261 §10.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (remove all bindings).
    Star,
    /// A contact address with its parameters (`q`, `expires`, `+sip.instance`, `reg-id`...).
    Addr(NameAddr),
}

impl Contact {
    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr> {
        match self {
            Contact::Addr(a) => Some(a),
            Contact::Star => None,
        }
    }

    /// The `expires` parameter, if present and valid.
    pub fn expires(&self) -> Option<u32> {
        self.addr()?
            .params
            .value("expires")
            .and_then(|v| scan::parse_u32(v.as_bytes()))
    }

    /// The `q` parameter (0.0 to 1.0), if present and valid.
    pub fn q(&self) -> Option<f32> {
        self.addr()?
            .params
            .value("q")
            .and_then(|v| v.parse().ok())
            .filter(|q| (0.0..=1.0).contains(q))
    }
}

impl TypedHeader for Contact {
    const NAME: HeaderName = HeaderName::Contact;
    const LIST: bool = true;
    fn parse(s: &[u8]) -> Result<Contact> {
        if scan::trim(s) == b"*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(s)
            .map(Contact::Addr)
            .map_err(|e| e.with_header("Contact"))
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

/// A media type with parameters: `Content-Type` and one `Accept` entry (RFC 3261 §20.15, §20.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Top-level type, e.g. `application` (`*` in Accept ranges).
    pub kind: String,
    /// Subtype, e.g. `sdp`.
    pub subtype: String,
    /// Parameters, e.g. `boundary`.
    pub params: Params,
}

impl MediaType {
    /// `type/subtype` without parameters.
    pub fn new(kind: &str, subtype: &str) -> MediaType {
        MediaType {
            kind: kind.into(),
            subtype: subtype.into(),
            params: Params::new(),
        }
    }

    /// Case-insensitive check of type and subtype.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// Whether this (possibly wildcard) range matches a concrete type.
    pub fn matches(&self, other: &MediaType) -> bool {
        (self.kind == "*" || self.kind.eq_ignore_ascii_case(&other.kind))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(&other.subtype))
    }

    fn parse_with(s: &[u8], name: &HeaderName) -> Result<MediaType> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let kind = c.token().ok_or_else(|| bad(name, "bad media type"))?;
        if !c.eat_sep(b'/') {
            return Err(bad(name, "bad media type"));
        }
        c.skip_ws();
        let subtype = c.token().ok_or_else(|| bad(name, "bad media subtype"))?;
        let params = Params::parse(&mut c).map_err(|e| e.with_header(name.static_name()))?;
        if !c.at_end() {
            return Err(bad(name, "unexpected text"));
        }
        Ok(MediaType {
            kind: scan::string(kind),
            subtype: scan::string(subtype),
            params,
        })
    }
}

/// `Content-Type` (RFC 3261 §20.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(pub MediaType);

impl TypedHeader for ContentType {
    const NAME: HeaderName = HeaderName::ContentType;
    fn parse(s: &[u8]) -> Result<ContentType> {
        MediaType::parse_with(s, &Self::NAME).map(ContentType)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One `Accept` entry (RFC 3261 §20.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept(pub MediaType);

impl TypedHeader for Accept {
    const NAME: HeaderName = HeaderName::Accept;
    const LIST: bool = true;
    fn parse(s: &[u8]) -> Result<Accept> {
        MediaType::parse_with(s, &Self::NAME).map(Accept)
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl MediaType {
    /// Writes `type/subtype;params` without the formatter's machinery (builders call this).
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        f.write_str(&self.kind)?;
        f.write_char('/')?;
        f.write_str(&self.subtype)?;
        self.params.write_to(f)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// A token with parameters: the shape of Content-Disposition, Event, Subscription-State,
/// Session-Expires' refresher, Reason and Retry-After's params.
fn token_with_params(s: &[u8], name: &HeaderName) -> Result<(String, Params)> {
    let mut c = Cursor::new(s);
    c.skip_ws();
    let t = c.token().ok_or_else(|| bad(name, "expected a token"))?;
    let params = Params::parse(&mut c).map_err(|e| e.with_header(name.static_name()))?;
    if !c.at_end() {
        return Err(bad(name, "unexpected text"));
    }
    Ok((scan::string(t), params))
}

macro_rules! token_params_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident, $field:ident, $list:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty {
            #[doc = concat!("The ", stringify!($field), " token.")]
            pub $field: String,
            /// Parameters.
            pub params: Params,
        }

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = $list;
            fn parse(s: &[u8]) -> Result<$ty> {
                token_with_params(s, &Self::NAME).map(|($field, params)| $ty { $field, params })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.$field, self.params)
            }
        }
    };
}

token_params_header!(
    /// `Content-Disposition: session;handling=required` (RFC 3261 §20.11).
    ContentDisposition, ContentDisposition, disposition, false);
token_params_header!(
    /// `Event: presence;id=7` (RFC 6665 §8.2.1).
    Event, Event, package, false);
token_params_header!(
    /// `Subscription-State: active;expires=600` (RFC 6665 §8.2.3).
    SubscriptionState, SubscriptionState, state, false);
token_params_header!(
    /// One `Reason` value: `SIP;cause=200;text="Call completed elsewhere"` (RFC 3326).
    Reason, Reason, protocol, true);

impl Event {
    /// The `id` parameter that tells subscriptions of one dialog apart.
    pub fn id(&self) -> Option<&str> {
        self.params.value("id")
    }
}

impl SubscriptionState {
    /// `expires` in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.params
            .value("expires")
            .and_then(|v| scan::parse_u32(v.as_bytes()))
    }
    /// `reason` (deactivated, probation, rejected, timeout, giveup, noresource, invariant).
    pub fn reason(&self) -> Option<&str> {
        self.params.value("reason")
    }
    /// `retry-after` in seconds.
    pub fn retry_after(&self) -> Option<u32> {
        self.params
            .value("retry-after")
            .and_then(|v| scan::parse_u32(v.as_bytes()))
    }
}

impl Reason {
    /// The `cause` parameter.
    pub fn cause(&self) -> Option<u16> {
        self.params.value("cause").and_then(|v| v.parse().ok())
    }
    /// The `text` parameter.
    pub fn text(&self) -> Option<&str> {
        self.params.value("text")
    }
}

macro_rules! token_list_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $ty(pub String);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = true;
            fn parse(s: &[u8]) -> Result<$ty> {
                let t = scan::trim(s);
                if !scan::all_token(t) {
                    return Err(bad(&Self::NAME, "expected a token"));
                }
                Ok($ty(scan::string(t)))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_list_header!(
    /// One `Supported` option tag (RFC 3261 §20.37).
    Supported, Supported);
token_list_header!(
    /// One `Require` option tag (RFC 3261 §20.32).
    Require, Require);
token_list_header!(
    /// One `Proxy-Require` option tag (RFC 3261 §20.29).
    ProxyRequire, ProxyRequire);
token_list_header!(
    /// One `Unsupported` option tag (RFC 3261 §20.40).
    Unsupported, Unsupported);
token_list_header!(
    /// One `Allow-Events` package (RFC 6665 §8.2.2).
    AllowEvents, AllowEvents);

/// One `Allow` method (RFC 3261 §20.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Allow(pub Method);

impl TypedHeader for Allow {
    const NAME: HeaderName = HeaderName::Allow;
    const LIST: bool = true;
    fn parse(s: &[u8]) -> Result<Allow> {
        Method::parse(scan::trim(s))
            .map(Allow)
            .map_err(|_| bad(&Self::NAME, "expected a method"))
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    /// Session interval in seconds.
    pub delta: u32,
    /// Parameters, including `refresher`.
    pub params: Params,
}

impl SessionExpires {
    /// The `refresher` parameter: `uac` or `uas`.
    pub fn refresher(&self) -> Option<&str> {
        self.params.value("refresher")
    }
}

fn delta_with_params(s: &[u8], name: &HeaderName) -> Result<(u32, Option<String>, Params)> {
    let mut c = Cursor::new(s);
    c.skip_ws();
    let n = c.take_while(|b| b.is_ascii_digit());
    let d = scan::parse_u32(n).ok_or_else(|| bad(name, "expected a number below 2^32"))?;
    c.skip_ws();
    let comment = if c.peek() == Some(b'(') {
        // Retry-After comment: balanced parentheses, no nesting needed in practice
        let start = c.pos + 1;
        let mut depth = 0usize;
        loop {
            match c.peek() {
                Some(b'(') => depth += 1,
                Some(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Some(_) => {}
                None => return Err(bad(name, "unterminated comment")),
            }
            c.pos += 1;
        }
        let text = scan::string(&c.s[start..c.pos]);
        c.pos += 1;
        Some(text)
    } else {
        None
    };
    let params = Params::parse(&mut c).map_err(|e| e.with_header(name.static_name()))?;
    if !c.at_end() {
        return Err(bad(name, "unexpected text"));
    }
    Ok((d, comment, params))
}

impl TypedHeader for SessionExpires {
    const NAME: HeaderName = HeaderName::SessionExpires;
    fn parse(s: &[u8]) -> Result<SessionExpires> {
        let (delta, comment, params) = delta_with_params(s, &Self::NAME)?;
        if comment.is_some() {
            return Err(bad(&Self::NAME, "unexpected comment"));
        }
        Ok(SessionExpires { delta, params })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.delta, self.params)
    }
}

/// `Retry-After: 18000;duration=3600` or `Retry-After: 120 (I'm in a meeting)` (RFC 3261 §20.33).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds to wait.
    pub delta: u32,
    /// Free-text comment, without the parentheses.
    pub comment: Option<String>,
    /// Parameters, including `duration`.
    pub params: Params,
}

impl RetryAfter {
    /// `Retry-After: <delta>`, seconds and nothing else: what our 503s and 500s say.
    pub fn seconds(delta: u32) -> RetryAfter {
        RetryAfter {
            delta,
            comment: None,
            params: Params::default(),
        }
    }
}

impl TypedHeader for RetryAfter {
    const NAME: HeaderName = HeaderName::RetryAfter;
    fn parse(s: &[u8]) -> Result<RetryAfter> {
        let (delta, comment, params) = delta_with_params(s, &Self::NAME)?;
        Ok(RetryAfter {
            delta,
            comment,
            params,
        })
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delta)?;
        if let Some(c) = &self.comment {
            write!(f, " ({c})")?;
        }
        write!(f, "{}", self.params)
    }
}

/// `RAck: 776656 1 INVITE` (RFC 3262 §7.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RAck {
    /// RSeq of the provisional response being acknowledged.
    pub rseq: u32,
    /// CSeq number of the INVITE.
    pub cseq: u32,
    /// CSeq method of the INVITE.
    pub method: Method,
}

impl TypedHeader for RAck {
    const NAME: HeaderName = HeaderName::RAck;
    fn parse(s: &[u8]) -> Result<RAck> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let rseq = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(&Self::NAME, "bad RSeq"))?;
        c.skip_ws();
        let cseq = scan::parse_u32(c.take_while(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(&Self::NAME, "bad CSeq"))?;
        c.skip_ws();
        let method = c
            .token()
            .ok_or_else(|| bad(&Self::NAME, "missing method"))?;
        if !c.at_end() {
            return Err(bad(&Self::NAME, "unexpected text"));
        }
        let method = Method::parse(method).map_err(|_| bad(&Self::NAME, "bad method"))?;
        Ok(RAck { rseq, cseq, method })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// `Replaces: 425928@bobster.example.org;to-tag=7743;from-tag=6472` (RFC 3891 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// Call-ID of the dialog to replace.
    pub call_id: String,
    /// Parameters: `to-tag`, `from-tag`, `early-only`.
    pub params: Params,
}

impl Replaces {
    /// The `to-tag` parameter.
    pub fn to_tag(&self) -> Option<&str> {
        self.params.value("to-tag")
    }
    /// The `from-tag` parameter.
    pub fn from_tag(&self) -> Option<&str> {
        self.params.value("from-tag")
    }
    /// Whether `early-only` is present.
    pub fn early_only(&self) -> bool {
        self.params.contains("early-only")
    }
}

impl TypedHeader for Replaces {
    const NAME: HeaderName = HeaderName::Replaces;
    fn parse(s: &[u8]) -> Result<Replaces> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let id = c.take_while(|b| scan::is_word(b) || b == b'@');
        let call_id = parse_call_id(id).map_err(|_| bad(&Self::NAME, "bad Call-ID"))?;
        let params = Params::parse(&mut c).map_err(|e| e.with_header("Replaces"))?;
        if !c.at_end() {
            return Err(bad(&Self::NAME, "unexpected text"));
        }
        if !params.contains("to-tag") || !params.contains("from-tag") {
            return Err(bad(&Self::NAME, "to-tag and from-tag are required"));
        }
        Ok(Replaces { call_id, params })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.call_id, self.params)
    }
}

/// One authentication parameter: `realm="atlanta.com"`, `qop=auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// Name, as written.
    pub name: String,
    /// Value, unquoted.
    pub value: String,
    /// Whether the value is written quoted.
    pub quoted: bool,
}

/// A challenge (WWW-Authenticate, Proxy-Authenticate) or credentials (Authorization,
/// Proxy-Authorization): a scheme and its parameters (RFC 3261 §20.27, §22; RFC 7616).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Scheme, e.g. `Digest`.
    pub scheme: String,
    /// `name=value` parameters.
    pub params: Vec<AuthParam>,
    /// An opaque token68 for schemes that use one instead of parameters.
    pub token: Option<String>,
}

impl Auth {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    }

    /// Whether the scheme is Digest.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// Adds a parameter.
    pub fn push(&mut self, name: &str, value: &str, quoted: bool) {
        self.params.push(AuthParam {
            name: name.into(),
            value: value.into(),
            quoted,
        });
    }

    fn parse_named(s: &[u8], name: &HeaderName) -> Result<Auth> {
        let mut c = Cursor::new(s);
        c.skip_ws();
        let scheme = c.token().ok_or_else(|| bad(name, "missing scheme"))?;
        let scheme = scan::string(scheme);
        if c.at_end() {
            return Ok(Auth {
                scheme,
                params: Vec::new(),
                token: None,
            });
        }
        let rest = c.rest();
        let mut params = Vec::new();
        for item in scan::split_commas(rest) {
            if item.is_empty() {
                continue; // RFC 7235 allows empty list elements
            }
            let mut p = Cursor::new(item);
            let pname = p.token().ok_or_else(|| bad(name, "bad auth parameter"))?;
            if !p.eat_sep(b'=') {
                // token68 form (e.g. `Negotiate abc==`): keep opaque
                if params.is_empty() && !rest.contains(&b',') {
                    return Ok(Auth {
                        scheme,
                        params,
                        token: Some(scan::string(scan::trim(rest))),
                    });
                }
                return Err(bad(name, "bad auth parameter"));
            }
            p.skip_ws();
            let (value, quoted) = if p.peek() == Some(b'"') {
                (scan::unescape_quoted(p.quoted()?), true)
            } else {
                let v = p.take_while(|b| scan::is_token(b) || b == b'/' || b == b'=' || b == b':');
                (scan::string(v), false)
            };
            if !p.at_end() {
                return Err(bad(name, "bad auth parameter"));
            }
            params.push(AuthParam {
                name: scan::string(pname),
                value,
                quoted,
            });
        }
        Ok(Auth {
            scheme,
            params,
            token: None,
        })
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token {
            return write!(f, " {t}");
        }
        for (i, p) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            if p.quoted {
                let mut s = String::new();
                scan::write_quoted(&mut s, &p.value);
                write!(f, "{}={s}", p.name)?;
            } else {
                write!(f, "{}={}", p.name, p.value)?;
            }
        }
        Ok(())
    }
}

macro_rules! auth_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub Auth);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            fn parse(s: &[u8]) -> Result<$ty> {
                Auth::parse_named(s, &Self::NAME).map($ty)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

auth_header!(
    /// `WWW-Authenticate` challenge of a 401 (RFC 3261 §20.44).
    WwwAuthenticate, WwwAuthenticate);
auth_header!(
    /// `Proxy-Authenticate` challenge of a 407 (RFC 3261 §20.27).
    ProxyAuthenticate, ProxyAuthenticate);
auth_header!(
    /// `Authorization` credentials (RFC 3261 §20.7).
    Authorization, Authorization);
auth_header!(
    /// `Proxy-Authorization` credentials (RFC 3261 §20.28).
    ProxyAuthorization, ProxyAuthorization);

/// `Date: Sat, 13 Nov 2010 23:29:00 GMT` (RFC 3261 §20.17: RFC 1123 form, GMT only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

impl TypedHeader for Date {
    const NAME: HeaderName = HeaderName::Date;
    fn parse(s: &[u8]) -> Result<Date> {
        let e = || {
            bad(
                &HeaderName::Date,
                "expected 'Wkd, DD Mon YYYY HH:MM:SS GMT'",
            )
        };
        let t = std::str::from_utf8(scan::trim(s)).map_err(|_| e())?;
        let parts: Vec<&str> = t.split_ascii_whitespace().collect();
        let [wkday, day, month, year, time, zone] = parts[..] else {
            return Err(e());
        };
        if !wkday.ends_with(',') || zone != "GMT" {
            return Err(e());
        }
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.iter().position(|m| *m == month).ok_or_else(e)? as u64 + 1;
        let day: u64 = day.parse().map_err(|_| e())?;
        let year: u64 = year.parse().map_err(|_| e())?;
        let hms: Vec<u64> = time
            .split(':')
            .map(|x| x.parse().map_err(|_| e()))
            .collect::<Result<_>>()?;
        let [h, m, sec] = hms[..] else {
            return Err(e());
        };
        if !(1..=31).contains(&day)
            || !(1970..=9999).contains(&year)
            || h > 23
            || m > 59
            || sec > 60
        {
            return Err(e());
        }
        // days from civil (Howard Hinnant's algorithm), for years >= 1970
        let (y, mo) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = y / 400;
        let yoe = y - era * 400;
        let doy = (153 * mo + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Ok(Date {
            unix: days * 86_400 + h * 3600 + m * 60 + sec,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix / 86_400;
        let secs = self.unix % 86_400;
        // civil from days
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + u64::from(m <= 2);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        write!(
            f,
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[(days % 7) as usize],
            d,
            MONTHS[(m - 1) as usize],
            y,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

macro_rules! text_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub String);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            fn parse(s: &[u8]) -> Result<$ty> {
                Ok($ty(scan::string(scan::trim(s))))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_header!(
    /// `User-Agent` product text (RFC 3261 §20.41).
    UserAgent, UserAgent);
text_header!(
    /// `Server` product text (RFC 3261 §20.35).
    Server, Server);
text_header!(
    /// `Subject` text (RFC 3261 §20.36).
    Subject, Subject);
text_header!(
    /// `SIP-ETag` entity tag (RFC 3903 §11.3.1).
    SipETag, SipETag);
text_header!(
    /// `SIP-If-Match` entity tag (RFC 3903 §11.3.2).
    SipIfMatch, SipIfMatch);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_with_folding_and_zeros() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!(
            c,
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert!(CSeq::parse(b"36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse(b"1INVITE").is_err());
        assert!(CSeq::parse(b"1").is_err());
    }

    #[test]
    fn digest_challenge() {
        let a = WwwAuthenticate::parse(
            br#"Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth,auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=SHA-256"#,
        )
        .unwrap();
        assert!(a.0.is_digest());
        assert_eq!(a.0.param("qop"), Some("auth,auth-int"));
        assert_eq!(a.0.param("ALGORITHM"), Some("SHA-256"));
        assert_eq!(a.0.param("opaque"), Some(""));
        let round = WwwAuthenticate::parse(a.to_string().as_bytes()).unwrap();
        assert_eq!(round, a);
        let u = Authorization::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(u.0.param("opaque-data"), Some("here"));
    }

    #[test]
    fn misc_headers() {
        let r = RetryAfter::parse(b"18000;duration=3600").unwrap();
        assert_eq!((r.delta, r.params.value("duration")), (18000, Some("3600")));
        let r = RetryAfter::parse(b"120 (I'm in a meeting)").unwrap();
        assert_eq!(r.comment.as_deref(), Some("I'm in a meeting"));
        let r = RAck::parse(b"776656 1 INVITE").unwrap();
        assert_eq!((r.rseq, r.cseq), (776656, 1));
        let r = Replaces::parse(b"425928@bobster.example.org;to-tag=7743;from-tag=6472;early-only")
            .unwrap();
        assert_eq!(
            (r.to_tag(), r.from_tag(), r.early_only()),
            (Some("7743"), Some("6472"), true)
        );
        let s = SubscriptionState::parse(b"terminated;reason=timeout;retry-after=30").unwrap();
        assert_eq!(
            (s.state.as_str(), s.reason(), s.retry_after()),
            ("terminated", Some("timeout"), Some(30))
        );
        let d = Date::parse(b"Sat, 13 Nov 2010 23:29:00 GMT").unwrap();
        assert_eq!(d.unix, 1_289_690_940);
        assert_eq!(d.to_string(), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert!(Date::parse(b"Sat, 13 Nov 2010 23:29:00 EST").is_err());
        let se = SessionExpires::parse(b"1800;refresher=uac").unwrap();
        assert_eq!(se.refresher(), Some("uac"));
        assert_eq!(parse_call_id(b" a@b ").unwrap(), "a@b");
        assert!(parse_call_id(b"a b").is_err());
        assert_eq!(parse_max_forwards(b"0068").unwrap(), 68);
        assert!(parse_max_forwards(b"300").is_err());
    }
}
