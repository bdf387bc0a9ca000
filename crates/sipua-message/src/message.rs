//! SIP messages (RFC 3261 §7): requests and responses, their parsing from bytes, validation as
//! a UAS applies it (§8.2, RFC 4475), and serialisation.
//!
//! A message is its bytes plus an index. [`Message::parse`] copies the input once, finds the
//! start line and the header lines, checks framing, and checks the headers every layer needs
//! at once (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length) without allocating,
//! keeping the transaction key (top Via branch and sent-by, CSeq, Call-ID, tags) as ranges
//! into the buffer. Typed values (`via()`, `from()`, [`Request::typed`], ...) are built when
//! first asked for. Serialising is a slice of the buffer, so an unmodified message goes out
//! byte for byte; a change writes a new buffer in which untouched lines keep their bytes.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes};

use crate::error::{ErrorKind, ParseError, Result};
use crate::header::{
    check_call_id, parse_max_forwards, span, CSeq, Contact, ContentLength, ContentType, Entry,
    Header, HeaderName, HeaderRef, Headers, Known, MediaType, Span, Transport, TypedHeader, Via,
    ViaAt, ViaParts, ViaText,
};
use crate::method::Method;
use crate::name_addr::{self, NameAddr};
use crate::scan;
use crate::uri::{check_uri, AbsoluteUri, Uri};

/// Most header lines accepted in one message; more is treated as an attack (513).
pub const MAX_HEADERS: usize = 512;

/// Longest header line accepted, folds included (513): a legitimate line, even a Via header
/// with the values of 70 proxies, is far shorter.
pub const MAX_LINE_LENGTH: usize = 8 * 1024;

/// Longest request line accepted (414 Request-URI Too Long, RFC 3261 §21.4.12).
pub const MAX_REQUEST_LINE: usize = 4 * 1024;

/// Most Via values accepted in one message (513): Max-Forwards starts at 70, so a request
/// that really crossed proxies carries far fewer.
pub const MAX_VIAS: usize = 128;

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// A SIP request: method, Request-URI, headers, body.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri_span: Span,
    head: Head,
}

/// A SIP response: status code, reason phrase, headers, body.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    reason: Span,
    head: Head,
}

/// What requests and responses share: the buffer and its index, behind an `Arc` so that a
/// message clones with a reference count (the core keeps several clones of each request);
/// every change builds a new message, so the shared part is never written.
#[derive(Debug, Clone)]
struct Head(std::sync::Arc<HeadData>);

impl std::ops::Deref for Head {
    type Target = HeadData;
    fn deref(&self) -> &HeadData {
        &self.0
    }
}

/// The buffer and its index.
#[derive(Debug)]
struct HeadData {
    buf: Bytes,
    /// The start line, without CRLF.
    start: Span,
    entries: Vec<Entry>,
    body: Span,
    core: Core,
    pristine: bool,
    /// A request's Request-URI, parsed on first use (boxed: most messages never need it).
    uri: OnceLock<Box<Uri>>,
    /// Every Via value is known to parse (found by a check in place, so that the next one
    /// does not walk them again).
    vias_parse: AtomicBool,
    /// The top Via value (its range) read in place, once ([`HeadData::top_via_text`]).
    via_text: OnceLock<Option<(Span, ViaAt)>>,
}

/// The top Via's transaction key, as ranges.
#[derive(Debug, Clone)]
pub(crate) struct TopVia {
    transport: Transport,
    host: Span,
    port: Option<u16>,
    branch: Option<Span>,
}

impl TopVia {
    /// Checks `value` (one Via value) as the top Via of a message is checked, and gives its
    /// key with spans from its start.
    pub(crate) fn check(value: &[u8]) -> Result<TopVia> {
        let p = ViaParts::check(value)?;
        Ok(TopVia {
            transport: Transport::parse(p.transport),
            host: span_of(value, p.host),
            port: p.port,
            branch: p.branch.map(|b| span_of(value, b)),
        })
    }

    /// The branch's span.
    pub(crate) fn branch(&self) -> Option<Span> {
        self.branch
    }

    /// The same key with the branch at `branch`.
    pub(crate) fn with_branch(&self, branch: Span) -> TopVia {
        TopVia {
            branch: Some(branch),
            ..self.clone()
        }
    }
}

/// What a core header line copied from a parsed message is known to hold: what the checks
/// of [`Message::parse`] found in the same bytes there. A message built from such lines (a
/// response copying its request's From, To, Call-ID, CSeq and Via) is indexed without
/// checking them again.
#[derive(Debug, Clone)]
pub(crate) enum Checked {
    /// The top Via's transaction key.
    TopVia(TopVia),
    /// The tag of From or To.
    Tag(Option<Span>),
    /// The Call-ID, trimmed.
    CallId(Span),
    /// The CSeq.
    CSeq(CSeq),
}

impl Checked {
    /// The same, for the line moved by `at` bytes.
    fn moved(self, at: i64) -> Checked {
        let mv = |s: Span| ((i64::from(s.0) + at) as u32, (i64::from(s.1) + at) as u32);
        match self {
            Checked::TopVia(v) => Checked::TopVia(TopVia {
                host: mv(v.host),
                branch: v.branch.map(mv),
                ..v
            }),
            Checked::Tag(t) => Checked::Tag(t.map(mv)),
            Checked::CallId(c) => Checked::CallId(mv(c)),
            c @ Checked::CSeq(_) => c,
        }
    }
}

/// Headers checked at parse time because every layer needs them (RFC 3261 §8.1.1).
#[derive(Debug, Clone)]
struct Core {
    top_via: TopVia,
    call_id: Span,
    cseq: CSeq,
    max_forwards: Option<u8>,
    from: usize,
    to: usize,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    /// Typed values built on first use (boxed: most messages never need them).
    lazy: OnceLock<Box<Lazy>>,
}

/// The typed forms of the core headers, each parsed on first use.
#[derive(Debug, Clone, Default)]
struct Lazy {
    via: OnceLock<Result<Vec<Via>>>,
    from: OnceLock<Result<NameAddr>>,
    to: OnceLock<Result<NameAddr>>,
}

/// The borrowed transaction key of a message's top Via (RFC 3261 §17.1.3, §17.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaKey<'a> {
    /// Transport of the top Via.
    pub transport: &'a Transport,
    /// sent-by host as written.
    pub host: &'a str,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<&'a str>,
}

fn text(buf: &[u8], s: Span) -> &str {
    // spans in the core only cover ASCII (tokens, words, hosts), checked at parse time
    std::str::from_utf8(&buf[span(s)]).unwrap_or_default()
}

fn span_of(buf: &[u8], sub: &[u8]) -> Span {
    let start = (sub.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    (start as u32, (start + sub.len()) as u32)
}

/// A line of a message being built or rebuilt.
pub(crate) enum Line<'a> {
    /// A header line of a parsed message, copied as it is (folds included).
    Raw(HeaderRef<'a>),
    /// A header made in code, written `Name: value`.
    New(Header),
}

impl Message {
    /// Parses one message from a datagram or a frame cut by [`crate::StreamFramer`].
    ///
    /// The input is copied once; use [`Message::parse_bytes`] to parse a `Bytes` in place.
    /// Bytes after the body that Content-Length announces are ignored (RFC 3261 §18.3).
    /// Without Content-Length, the body runs to the end of the input (datagram semantics).
    ///
    /// ```
    /// let msg = sipua_message::Message::parse(
    ///     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
    ///       Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
    ///       From: <sip:alice@example.com>;tag=1928301774\r\n\
    ///       To: <sip:bob@example.com>\r\n\
    ///       Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    /// ).unwrap();
    /// assert_eq!(msg.call_id(), "a84b4c76e66710");
    /// assert_eq!(msg.via_key().branch, Some("z9hG4bK776asdhds"));
    /// ```
    pub fn parse(data: &[u8]) -> Result<Message> {
        Message::parse_bytes(Bytes::copy_from_slice(data))
    }

    /// Parses one message from `buf` without copying it.
    pub fn parse_bytes(buf: Bytes) -> Result<Message> {
        parse_message(buf)
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self, Message::Request(_))
    }

    fn head(&self) -> &Head {
        match self {
            Message::Request(r) => &r.head,
            Message::Response(r) => &r.head,
        }
    }

    fn replace_with(&mut self, m: Message) {
        *self = m;
    }
}

/// Methods shared by [`Message`], [`Request`] and [`Response`].
macro_rules! common_methods {
    () => {
        /// All header lines in order.
        pub fn headers(&self) -> Headers<'_> {
            let h = self.head();
            Headers::new(&h.buf, &h.entries)
        }

        /// The body (exactly Content-Length bytes).
        pub fn body(&self) -> &[u8] {
            let h = self.head();
            &h.buf[span(h.body)]
        }

        /// The body as a shared `Bytes` (no copy).
        pub fn body_bytes(&self) -> Bytes {
            let h = self.head();
            h.buf.slice(span(h.body))
        }

        /// The wire form: the message's own bytes (no copy).
        pub fn to_bytes(&self) -> Bytes {
            let h = self.head();
            h.buf.slice(h.start.0 as usize..h.body.1 as usize)
        }

        /// The top Via's transaction key, read without allocating.
        pub fn via_key(&self) -> ViaKey<'_> {
            let h = self.head();
            let v = &h.core.top_via;
            ViaKey {
                transport: &v.transport,
                host: text(&h.buf, v.host),
                port: v.port,
                branch: v.branch.map(|b| text(&h.buf, b)),
            }
        }

        /// The top Via's branch: `via_key().branch` without reading the host.
        pub fn branch(&self) -> Option<&str> {
            let h = self.head();
            h.core.top_via.branch.map(|b| text(&h.buf, b))
        }

        /// The top Via's transport: `via_key().transport` without reading the rest.
        pub fn via_transport(&self) -> &Transport {
            &self.head().core.top_via.transport
        }

        /// Whether To has a tag: `to_tag().is_some()` without reading the tag.
        pub fn has_to_tag(&self) -> bool {
            self.head().core.to_tag.is_some()
        }

        /// Every Via, top first, parsed in full on first use (the top Via's key is checked at
        /// parse time; the rest of the grammar here).
        pub fn via(&self) -> Result<&[Via]> {
            self.head().vias()
        }

        /// The top Via read in place ([`ViaText`], no allocation) when it is written in the
        /// form [`Via`]'s `Display` writes and every Via parses (when [`Message::via`] is
        /// `Ok`); `None` otherwise, and then [`Message::top_via`] reads it.
        pub fn top_via_text(&self) -> Option<ViaText<'_>> {
            self.head().top_via_text()
        }

        /// The top Via, parsed in full on first use.
        pub fn top_via(&self) -> Result<&Via> {
            self.via()?
                .first()
                .ok_or_else(|| ParseError::in_header(ErrorKind::MissingHeader, "Via", "missing"))
        }

        /// The From header, parsed in full on first use.
        pub fn from(&self) -> Result<&NameAddr> {
            let h = self.head();
            h.lazy()
                .from
                .get_or_init(|| h.name_addr(h.core.from, "From"))
                .as_ref()
                .map_err(Clone::clone)
        }

        /// The To header, parsed in full on first use.
        pub fn to(&self) -> Result<&NameAddr> {
            let h = self.head();
            h.lazy()
                .to
                .get_or_init(|| h.name_addr(h.core.to, "To"))
                .as_ref()
                .map_err(Clone::clone)
        }

        /// The From header as a value of the caller's own: the one [`Message::from`] keeps
        /// when it is already parsed (a copy), else parsed for the caller alone and not kept,
        /// which spares the copy when the address is read once (a dialog taking it).
        pub fn owned_from(&self) -> Result<NameAddr> {
            let h = self.head();
            match h.core.lazy.get().and_then(|l| l.from.get()) {
                Some(r) => r.clone(),
                None => h.name_addr(h.core.from, "From"),
            }
        }

        /// The To header as a value of the caller's own ([`Message::owned_from`] for To).
        pub fn owned_to(&self) -> Result<NameAddr> {
            let h = self.head();
            match h.core.lazy.get().and_then(|l| l.to.get()) {
                Some(r) => r.clone(),
                None => h.name_addr(h.core.to, "To"),
            }
        }

        /// [`Message::owned_from`] without its `tag` parameters (as [`Params::remove`]
        /// leaves it; the parameters otherwise in order): the peer's address a dialog keeps,
        /// parsed without making the tag to drop.
        ///
        /// [`Params::remove`]: crate::Params::remove
        pub fn owned_from_untagged(&self) -> Result<NameAddr> {
            let h = self.head();
            match h.core.lazy.get().and_then(|l| l.from.get()) {
                Some(r) => r.clone().map(untagged),
                None => h.name_addr_untagged(h.core.from, "From"),
            }
        }

        /// [`Message::owned_to`] without its `tag` parameters
        /// ([`Message::owned_from_untagged`] for To).
        pub fn owned_to_untagged(&self) -> Result<NameAddr> {
            let h = self.head();
            match h.core.lazy.get().and_then(|l| l.to.get()) {
                Some(r) => r.clone().map(untagged),
                None => h.name_addr_untagged(h.core.to, "To"),
            }
        }

        /// Checks the full grammar of the headers a UA relies on (every Via, From, To,
        /// Contact), beyond what [`Message::parse`] checks. A UAS answers a failure with 400.
        pub fn validate(&self) -> Result<()> {
            self.via()?;
            self.from()?;
            self.to()?;
            self.contacts()?;
            Ok(())
        }

        /// The verdict of [`Message::validate`] (the same `Ok` or the same error) without
        /// keeping From and To as typed values: their URIs are checked in place, and they are
        /// parsed only when that check fails (to give the error). For a request whose From and
        /// To are not read afterwards (a BYE, say) this is the cheaper check.
        pub fn validate_quick(&self) -> Result<()> {
            self.validate_vias()?;
            let h = self.head();
            // an address already parsed is not checked again
            let typed = h.core.lazy.get();
            let parsed = |f: fn(&Lazy) -> &OnceLock<Result<NameAddr>>| {
                typed.is_some_and(|l| f(l).get().is_some_and(|r| r.is_ok()))
            };
            if !parsed(|l| &l.from) && !h.address_parses(h.core.from) {
                self.from()?;
            }
            if !parsed(|l| &l.to) && !h.address_parses(h.core.to) {
                self.to()?;
            }
            self.contacts_parse()
        }

        /// The Vias' part of [`Message::validate`]'s verdict (every Via parses), told in
        /// place when it can be: for a caller that parses From, To and Contact itself (with
        /// [`Message::owned_from`], [`Message::contacts`] and the like, which give their
        /// errors), so that they are not checked twice.
        pub fn validate_vias(&self) -> Result<()> {
            let h = self.head();
            let typed = h.core.lazy.get();
            let vias_parsed = typed.is_some_and(|l| l.via.get().is_some_and(|r| r.is_ok()));
            if !vias_parsed && !h.vias_parse_in_full() {
                self.via()?;
            }
            Ok(())
        }

        /// As [`Message::contacts`] says `Ok` or its error: every value of every Contact
        /// line, checked in place when it can be.
        fn contacts_parse(&self) -> Result<()> {
            for c in self.headers().iter().filter(|c| c.is(&HeaderName::Contact)) {
                for e in scan::split_commas(c.value()) {
                    if !name_addr::contact_parses_in_full(e) {
                        <Contact as TypedHeader>::parse(e)?;
                    }
                }
            }
            Ok(())
        }

        /// The From tag, read without allocating.
        pub fn from_tag(&self) -> Option<&str> {
            let h = self.head();
            h.core.from_tag.map(|t| text(&h.buf, t))
        }

        /// The To tag, read without allocating.
        pub fn to_tag(&self) -> Option<&str> {
            let h = self.head();
            h.core.to_tag.map(|t| text(&h.buf, t))
        }

        /// The Call-ID.
        pub fn call_id(&self) -> &str {
            let h = self.head();
            text(&h.buf, h.core.call_id)
        }

        /// The CSeq.
        pub fn cseq(&self) -> &CSeq {
            &self.head().core.cseq
        }

        /// Max-Forwards, if present.
        pub fn max_forwards(&self) -> Option<u8> {
            self.head().core.max_forwards
        }

        /// The first value of a typed header: `None` if absent, `Some(Err)` if malformed.
        pub fn typed<T: TypedHeader>(&self) -> Option<Result<T>> {
            self.headers().typed()
        }

        /// Every value of a typed header, across lines and commas.
        pub fn typed_all<T: TypedHeader>(&self) -> Result<Vec<T>> {
            self.headers().typed_all()
        }

        /// The Contact values (`*` included).
        pub fn contacts(&self) -> Result<Vec<Contact>> {
            self.typed_all()
        }

        /// The URI of the first Contact value as written (between its angle brackets, or the
        /// whole addr-spec), without parsing it; `None` when there is no Contact, the first
        /// value is `*`, or its address cannot be told apart.
        pub fn first_contact_uri(&self) -> Option<&[u8]> {
            let value = self.headers().get(&HeaderName::Contact)?.value();
            let first = scan::split_commas(value).next()?;
            name_addr::uri_bytes(first).filter(|u| *u != b"*")
        }

        /// The Content-Type, if present and well-formed.
        pub fn content_type(&self) -> Option<MediaType> {
            self.typed::<ContentType>()
                .and_then(|r| r.ok())
                .map(|c| c.0)
        }

        /// Whether the message is exactly as parsed (not built or modified in code).
        pub fn is_pristine(&self) -> bool {
            self.head().pristine
        }

        /// Replaces every header of `h`'s name with `h` (at the place of the first one).
        /// The result must still be a valid message; Content-Length follows the body and
        /// cannot be set.
        pub fn set_header(&mut self, h: Header) -> Result<()> {
            if *h.name() == HeaderName::ContentLength {
                return Err(ParseError::in_header(
                    ErrorKind::HeaderValue,
                    "Content-Length",
                    "follows the body; use set_body",
                ));
            }
            let name = h.name().clone();
            let m = self
                .head()
                .rebuilt(self.head().lines_with(&name, Some(h), false), None)?;
            self.replace_with(m);
            Ok(())
        }

        /// Appends a header line (for Via use `push_via`, which puts it on top).
        pub fn push_header(&mut self, h: Header) -> Result<()> {
            let mut lines = self.head().lines();
            lines.push(Line::New(h));
            let m = self.head().rebuilt(lines, None)?;
            self.replace_with(m);
            Ok(())
        }

        /// Removes every header named `name`; fails if that leaves the message invalid.
        pub fn remove_header(&mut self, name: &HeaderName) -> Result<usize> {
            let n = self.headers().iter().filter(|h| h.is(name)).count();
            if n > 0 {
                let m = self
                    .head()
                    .rebuilt(self.head().lines_with(name, None, true), None)?;
                self.replace_with(m);
            }
            Ok(n)
        }

        /// Puts a Via on top (what a UAC or proxy does when sending, RFC 3261 §8.1.1.7, §16.6).
        pub fn push_via(&mut self, via: Via) -> Result<()> {
            let h = self.head();
            let at = h
                .entries
                .iter()
                .position(|e| e.known == Some(Known::Via))
                .unwrap_or(0);
            let mut lines = h.lines();
            lines.insert(at, Line::New(Header::new(HeaderName::Via, via.to_string())));
            let m = self.head().rebuilt(lines, None)?;
            self.replace_with(m);
            Ok(())
        }

        /// Removes the top Via (what a UAC or proxy does with a response, RFC 3261 §18.1.2);
        /// refuses to remove the last one.
        pub fn pop_via(&mut self) -> Option<Via> {
            let vias = self.via().ok()?;
            if vias.len() < 2 {
                return None;
            }
            let top = vias[0].clone();
            let h = self.head();
            let i = h.entries.iter().position(|e| e.known == Some(Known::Via))?;
            let mut lines = h.lines();
            let rest: Vec<&[u8]> = scan::split_commas(&h.buf[span(h.entries[i].value)])
                .skip(1)
                .collect();
            if rest.is_empty() {
                lines.remove(i);
            } else {
                lines[i] = Line::New(Header::new(HeaderName::Via, rest.join(&b", "[..])));
            }
            let m = self.head().rebuilt(lines, None).ok()?;
            self.replace_with(m);
            Some(top)
        }

        /// Replaces the top Via value (a UAS adding `received` and `rport`, RFC 3581 §4),
        /// keeping the other Via values and lines as they are.
        pub fn set_top_via(&mut self, via: &Via) -> Result<()> {
            let h = self.head();
            let i = h
                .entries
                .iter()
                .position(|e| e.known == Some(Known::Via))
                .ok_or_else(|| ParseError::in_header(ErrorKind::MissingHeader, "Via", "missing"))?;
            let mut lines = h.lines();
            let rest: Vec<&[u8]> = scan::split_commas(&h.buf[span(h.entries[i].value)])
                .skip(1)
                .collect();
            let mut value = via.to_string().into_bytes();
            for r in rest {
                value.extend_from_slice(b", ");
                value.extend_from_slice(r);
            }
            lines[i] = Line::New(Header::new(HeaderName::Via, value));
            let m = self.head().rebuilt(lines, None)?;
            self.replace_with(m);
            Ok(())
        }

        /// Sets the tag of the To header (a UAS creating a dialog, RFC 3261 §8.2.6.2).
        pub fn set_to_tag(&mut self, tag: &str) -> Result<()> {
            let mut to = self.to()?.clone();
            to.set_tag(tag);
            self.set_header(Header::new(HeaderName::To, to.to_string()))
        }

        /// Replaces the body, setting Content-Type (removed when `None`) and Content-Length.
        pub fn set_body(&mut self, content_type: Option<&MediaType>, body: &[u8]) -> Result<()> {
            let h = self.head();
            let mut lines: Vec<Line<'_>> = h
                .entries
                .iter()
                .filter(|e| !matches!(e.known, Some(Known::ContentType | Known::ContentLength)))
                .map(|e| Line::Raw(HeaderRef::new(&h.buf, e)))
                .collect();
            if let Some(ct) = content_type {
                lines.push(Line::New(Header::typed(&ContentType(ct.clone()))));
            }
            lines.push(Line::New(Header::new(
                HeaderName::ContentLength,
                body.len().to_string(),
            )));
            let m = self.head().rebuilt(lines, Some(body))?;
            self.replace_with(m);
            Ok(())
        }
    };
}

impl Message {
    common_methods!();
}

impl Request {
    common_methods!();

    fn head(&self) -> &Head {
        &self.head
    }

    fn replace_with(&mut self, m: Message) {
        if let Message::Request(r) = m {
            *self = r;
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI (parsed on first use).
    pub fn uri(&self) -> &Uri {
        self.head.uri.get_or_init(|| {
            Box::new(
                Uri::parse(&self.head.buf[span(self.uri_span)])
                    .unwrap_or_else(|_| unparsable_uri()),
            )
        })
    }

    /// What the parse found in the core header line `h` of this request (the top Via line,
    /// From, To, Call-ID or CSeq), for a message built by copying that line
    /// ([`Writer::raw_checked`]); `None` for any other line.
    pub(crate) fn checked(&self, h: HeaderRef<'_>, top_via: bool) -> Option<Checked> {
        let core = &self.head.core;
        match h.entry().known? {
            Known::Via if top_via => Some(Checked::TopVia(core.top_via.clone())),
            Known::From => Some(Checked::Tag(core.from_tag)),
            Known::To => Some(Checked::Tag(core.to_tag)),
            Known::CallId => Some(Checked::CallId(core.call_id)),
            Known::CSeq => Some(Checked::CSeq(core.cseq.clone())),
            _ => None,
        }
    }

    /// The user part of a `sip:` or `sips:` Request-URI as [`Request::uri`] gives it
    /// (`as_sip()`'s `user`), read in place without parsing the URI: `Some(None)` for a SIP
    /// URI without one; `None` when the URI is not a SIP URI or its user part has escapes
    /// (then [`Request::uri`] tells).
    pub fn uri_sip_user(&self) -> Option<Option<&str>> {
        // every Request-URI passed `check_uri` when its message was indexed, which cuts a
        // SIP URI as `Uri::parse` does: the user part ends at the first `@` (and before the
        // password's `:`), and without escapes it is its own decoded form
        let b = self.uri_bytes();
        let colon = memchr::memchr(b':', b)?;
        let scheme = &b[..colon];
        if !scheme.eq_ignore_ascii_case(b"sip") && !scheme.eq_ignore_ascii_case(b"sips") {
            return None;
        }
        let rest = &b[colon + 1..];
        let user = match memchr::memchr(b'@', rest) {
            None => None,
            Some(at) => {
                let info = &rest[..at];
                let user = memchr::memchr(b':', info).map_or(info, |c| &info[..c]);
                if user.contains(&b'%') {
                    return None;
                }
                Some(std::str::from_utf8(user).ok()?)
            }
        };
        debug_assert_eq!(
            self.uri().as_sip().map(|u| u.user.as_deref()),
            Some(user),
            "{}",
            String::from_utf8_lossy(b)
        );
        Some(user)
    }

    /// The Request-URI as written.
    pub fn uri_bytes(&self) -> &[u8] {
        &self.head.buf[span(self.uri_span)]
    }

    /// Changes the Request-URI (a proxy retargeting, a UAC following a redirect).
    pub fn set_uri(&mut self, uri: &Uri) -> Result<()> {
        let start = format!("{} {} SIP/2.0", self.method, uri);
        let m = self.head.with_start(start.as_bytes())?;
        self.replace_with(m);
        Ok(())
    }

    /// Sets Max-Forwards.
    pub fn set_max_forwards(&mut self, n: u8) -> Result<()> {
        self.set_header(Header::new(HeaderName::MaxForwards, n.to_string()))
    }
}

impl Response {
    common_methods!();

    fn head(&self) -> &Head {
        &self.head
    }

    fn replace_with(&mut self, m: Message) {
        if let Message::Response(r) = m {
            *self = r;
        }
    }

    /// The status code (100 to 699).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (invalid UTF-8 replaced; the exact bytes are in [`Response::to_bytes`]).
    pub fn reason(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.head.buf[span(self.reason)])
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// Whether this is a 2xx response.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Changes the status code and reason phrase (`None`: the standard phrase).
    pub fn set_status(&mut self, status: u16, reason: Option<&str>) -> Result<()> {
        let status = status.clamp(100, 699);
        let reason = reason.unwrap_or(crate::status::reason_phrase(status));
        if reason.contains(['\r', '\n']) {
            return Err(ParseError::new(
                ErrorKind::StartLine,
                "reason phrase with a line break",
            ));
        }
        let start = format!("SIP/2.0 {status} {reason}");
        let m = self.head.with_start(start.as_bytes())?;
        self.replace_with(m);
        Ok(())
    }
}

/// `a` without its `tag` parameters.
fn untagged(mut a: NameAddr) -> NameAddr {
    a.params.remove("tag");
    a
}

fn unparsable_uri() -> Uri {
    Uri::Absolute(AbsoluteUri {
        scheme: "invalid".into(),
        rest: String::new(),
    })
}

impl HeadData {
    fn vias(&self) -> Result<&[Via]> {
        let r = self.lazy().via.get_or_init(|| {
            let mut out = Vec::with_capacity(2);
            for e in self.entries.iter().filter(|e| e.known == Some(Known::Via)) {
                for part in scan::split_commas(&self.buf[span(e.value)]) {
                    if part.is_empty() {
                        return Err(ParseError::in_header(
                            ErrorKind::HeaderValue,
                            "Via",
                            "empty value",
                        ));
                    }
                    out.push(Via::parse(part)?);
                }
            }
            Ok(out)
        });
        r.as_deref().map_err(Clone::clone)
    }

    /// Whether every Via value parses (as [`HeadData::vias`] would say), told without
    /// allocating.
    fn vias_parse_in_full(&self) -> bool {
        if self.vias_parse.load(Ordering::Relaxed) {
            return true;
        }
        let parse = self
            .entries
            .iter()
            .filter(|e| e.known == Some(Known::Via))
            .all(|e| {
                scan::split_commas(&self.buf[span(e.value)])
                    .all(|v| !v.is_empty() && Via::parses_in_full(v))
            });
        self.vias_parse.store(parse, Ordering::Relaxed);
        parse
    }

    /// The top Via read in place, when it is in canonical form and every Via parses (read
    /// once, kept for the next reader).
    fn top_via_text(&self) -> Option<ViaText<'_>> {
        let (at, via) = self.via_text.get_or_init(|| self.read_top_via()).as_ref()?;
        Some(ViaText::new(&self.buf[span(*at)], *via))
    }

    fn read_top_via(&self) -> Option<(Span, ViaAt)> {
        let mut vias = self.entries.iter().filter(|e| e.known == Some(Known::Via));
        let first = &self.buf[span(vias.next()?.value)];
        let mut values = scan::split_commas(first);
        let top = values.next()?;
        let read = ViaText::read(top)?;
        if !self.vias_parse.load(Ordering::Relaxed) {
            // the others parse too, as `vias` would have them
            let rest_parse = values.all(|v| !v.is_empty() && Via::parses_in_full(v))
                && vias.all(|e| {
                    scan::split_commas(&self.buf[span(e.value)])
                        .all(|v| !v.is_empty() && Via::parses_in_full(v))
                });
            self.vias_parse.store(rest_parse, Ordering::Relaxed);
            if !rest_parse {
                return None;
            }
        }
        Some((span_of(&self.buf, top), read))
    }

    fn lazy(&self) -> &Lazy {
        self.core.lazy.get_or_init(Box::default)
    }

    /// Whether the From or To of `entry` parses in full, told without parsing it when it can
    /// be (its structure was checked when the message was indexed).
    fn address_parses(&self, entry: usize) -> bool {
        self.entries
            .get(entry)
            .is_some_and(|e| name_addr::parses_in_full(&self.buf[span(e.value)]))
    }

    fn name_addr_untagged(&self, entry: usize, header: &'static str) -> Result<NameAddr> {
        let v = self
            .entries
            .get(entry)
            .map_or(&b""[..], |e| &self.buf[span(e.value)]);
        NameAddr::parse_untagged(v).map_err(|e| e.with_header_name(header))
    }

    fn name_addr(&self, entry: usize, header: &'static str) -> Result<NameAddr> {
        let v = self
            .entries
            .get(entry)
            .map_or(&b""[..], |e| &self.buf[span(e.value)]);
        NameAddr::parse(v).map_err(|e| e.with_header_name(header))
    }

    /// This message with other header lines (and optionally another body).
    fn rebuilt(&self, lines: Vec<Line<'_>>, body: Option<&[u8]>) -> Result<Message> {
        assemble(
            &self.buf[span(self.start)],
            &lines,
            body.unwrap_or(&self.buf[span(self.body)]),
        )
    }

    /// This message with another start line.
    fn with_start(&self, start: &[u8]) -> Result<Message> {
        assemble(start, &self.lines(), &self.buf[span(self.body)])
    }

    /// Every header line, unchanged.
    fn lines(&self) -> Vec<Line<'_>> {
        self.entries
            .iter()
            .map(|e| Line::Raw(HeaderRef::new(&self.buf, e)))
            .collect()
    }

    /// Every header line, with the `name` ones replaced by `new` (at the first one's place,
    /// or appended) or removed.
    fn lines_with(&self, name: &HeaderName, new: Option<Header>, remove: bool) -> Vec<Line<'_>> {
        let mut lines = Vec::with_capacity(self.entries.len() + 1);
        let mut new = new;
        for e in &self.entries {
            if e.is(&self.buf, name) {
                if !remove {
                    if let Some(h) = new.take() {
                        lines.push(Line::New(h));
                    }
                }
            } else {
                lines.push(Line::Raw(HeaderRef::new(&self.buf, e)));
            }
        }
        if let Some(h) = new {
            lines.push(Line::New(h));
        }
        lines
    }
}

/// Writes a message from a start line, header lines and a body, and indexes it.
pub(crate) fn assemble(start: &[u8], lines: &[Line<'_>], body: &[u8]) -> Result<Message> {
    let len = start.len()
        + 4
        + body.len()
        + lines
            .iter()
            .map(|l| match l {
                Line::Raw(h) => h.raw_line().len() + 2,
                Line::New(h) => h.name().as_str().len() + h.value().len() + 4,
            })
            .sum::<usize>();
    let mut w = Writer::new(len, lines.len());
    w.out.put_slice(start);
    w.end_start_line();
    for l in lines {
        match l {
            Line::Raw(h) => w.raw(*h),
            Line::New(h) => w.header(h.name(), h.value()),
        }
    }
    w.finish(body)
}

/// `fmt::Write` into a byte buffer: typed values are written where they go, with no
/// `String` in between.
pub(crate) struct ByteWriter<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `value`'s text (its `Display`) to `out`.
pub(crate) fn write_display(out: &mut Vec<u8>, value: &dyn fmt::Display) {
    // writing into a Vec cannot fail
    let _ = fmt::write(&mut ByteWriter(out), format_args!("{value}"));
}

/// Appends the decimal digits of `n` to `out`, without the formatter.
pub(crate) fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let (digits, start) = crate::text::decimal_digits(n);
    out.extend_from_slice(&digits[start..]);
}

/// Writes a message into one buffer and records the index of each header line as it goes,
/// so that a built message is not scanned again: only the checks that follow the line scan
/// (framing, the core headers, the start line) run on it, and they give the same verdicts as
/// [`Message::parse`] would on the same bytes.
///
/// A line that the parser might cut differently (a value with a line break or outer blanks, a
/// name that is not a token) makes [`Writer::finish`] parse the whole buffer instead, so a
/// built message is always exactly what a peer will parse.
pub(crate) struct Writer {
    /// The message so far.
    pub(crate) out: Vec<u8>,
    entries: Vec<Entry>,
    /// Core header lines copied with what their source's parse found in them, by entry.
    checked: Vec<(usize, Checked)>,
    start_end: usize,
    /// Every line so far is indexed as the parser would index it.
    plain: bool,
}

impl Writer {
    /// A writer with room for `capacity` bytes and `lines` header lines; the start line is
    /// written into [`Writer::out`] first, then ended with [`Writer::end_start_line`].
    pub(crate) fn new(capacity: usize, lines: usize) -> Writer {
        Writer {
            out: Vec::with_capacity(capacity),
            entries: Vec::with_capacity(lines.max(8)),
            checked: Vec::new(),
            start_end: 0,
            plain: true,
        }
    }

    /// Ends the start line written so far.
    pub(crate) fn end_start_line(&mut self) {
        let start = &self.out[..];
        if start.is_empty() || memchr::memchr2(b'\r', b'\n', start).is_some() {
            self.plain = false;
        }
        self.start_end = self.out.len();
        self.out.put_slice(b"\r\n");
    }

    /// Copies a core header line of a parsed message with what its parse found in it
    /// ([`Request::checked`]), which indexing then takes instead of checking the line again.
    pub(crate) fn raw_checked(&mut self, h: HeaderRef<'_>, checked: Option<Checked>) {
        let at = self.out.len() as i64 - i64::from(h.entry().line.0);
        if let Some(c) = checked {
            self.note_checked(self.entries.len(), c.moved(at));
        }
        self.raw(h);
    }

    /// Says what the line just written holds (`checked`, its spans from the start of the
    /// value), which indexing then takes instead of checking the line.
    pub(crate) fn last_value_checked(&mut self, checked: Checked) {
        let Some(e) = self.entries.last() else {
            return;
        };
        let c = checked.moved(i64::from(e.value.0));
        self.note_checked(self.entries.len() - 1, c);
    }

    /// Says that the value of the line just written ends with its From or To tag, `len`
    /// bytes long (a tag appended to an address that had none), which indexing then takes
    /// instead of checking the line again.
    pub(crate) fn last_tag_is(&mut self, len: usize) {
        let Some(e) = self.entries.last() else {
            return;
        };
        let end = e.value.1;
        let tag = (end - len as u32, end);
        self.note_checked(self.entries.len() - 1, Checked::Tag(Some(tag)));
    }

    /// Records what is known of line `entry`. The first note makes room for the usual
    /// handful (Via, From, To, Call-ID, CSeq, a tag) at once, rather than growing twice.
    fn note_checked(&mut self, entry: usize, checked: Checked) {
        if self.checked.capacity() == 0 {
            self.checked.reserve_exact(8);
        }
        self.checked.push((entry, checked));
    }

    /// Copies a header line of a parsed message (its index moves with it).
    pub(crate) fn raw(&mut self, h: HeaderRef<'_>) {
        let e = h.entry();
        let at = self.out.len() as i64 - i64::from(e.line.0);
        let shift = |s: Span| ((i64::from(s.0) + at) as u32, (i64::from(s.1) + at) as u32);
        self.entries.push(Entry {
            known: e.known,
            line: shift(e.line),
            name: shift(e.name),
            value: shift(e.value),
        });
        self.out.put_slice(h.raw_line());
        self.out.put_slice(b"\r\n");
    }

    /// Writes `Name: value`.
    pub(crate) fn header(&mut self, name: &HeaderName, value: &[u8]) {
        self.header_with(name, |out| out.extend_from_slice(value));
    }

    /// Writes `Name: ` and then the value that `write` appends to the buffer.
    pub(crate) fn header_with(&mut self, name: &HeaderName, write: impl FnOnce(&mut Vec<u8>)) {
        let line = self.out.len();
        self.out.put_slice(name.as_str().as_bytes());
        let name_end = self.out.len();
        self.out.put_slice(b": ");
        let vs = self.out.len();
        write(&mut self.out);
        let ve = self.out.len();
        // a named header is its own known name (its canonical spelling looks up to it)
        let known = match name {
            HeaderName::Other(_) => Known::lookup_in(&self.out[line..], name_end - line),
            n => n.to_known(),
        };
        let value = &self.out[vs..ve];
        let plain = match (value.first(), value.last()) {
            (Some(&first), Some(&last)) => {
                !scan::is_ws(first)
                    && !scan::is_ws(last)
                    && memchr::memchr2(b'\r', b'\n', value).is_none()
            }
            _ => false,
        };
        if !plain || (known.is_none() && !scan::all_token(&self.out[line..name_end])) {
            self.plain = false;
        }
        self.entries.push(Entry {
            known,
            line: (line as u32, ve as u32),
            name: (line as u32, name_end as u32),
            value: (vs as u32, ve as u32),
        });
        self.out.put_slice(b"\r\n");
    }

    /// Ends the header section, appends the body and gives the message, indexed as written
    /// (or parsed, when a line asked for it).
    pub(crate) fn finish(mut self, body: &[u8]) -> Result<Message> {
        self.out.put_slice(b"\r\n");
        let body_start = self.out.len();
        self.out.put_slice(body);
        let plain =
            self.plain && self.entries.len() < MAX_HEADERS && self.out.len() <= u32::MAX as usize;
        let buf = Bytes::from(self.out);
        #[cfg(debug_assertions)]
        let check = plain.then(|| (parse_message(buf.clone()), self.entries.clone()));
        let m = if plain {
            index_message(
                buf,
                0,
                self.start_end,
                self.entries,
                body_start,
                &self.checked,
            )
        } else {
            parse_message(buf)
        };
        #[cfg(debug_assertions)]
        if let Some((parsed, entries)) = check {
            // what is indexed as written is what the parser finds
            match (&parsed, &m) {
                (Ok(p), Ok(w)) => {
                    let head = |m: &Message| match m {
                        Message::Request(r) => r.head.clone(),
                        Message::Response(r) => r.head.clone(),
                    };
                    let (p, w) = (head(p), head(w));
                    assert_eq!(format!("{:?}", p.entries), format!("{entries:?}"));
                    assert_eq!(format!("{:?}", p.core), format!("{:?}", w.core));
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("written {m:?}, parsed {parsed:?}"),
            }
        }
        let mut m = m?;
        let head = match &mut m {
            Message::Request(r) => &mut r.head,
            Message::Response(r) => &mut r.head,
        };
        if let Some(h) = std::sync::Arc::get_mut(&mut head.0) {
            h.pristine = false; // just made: not shared yet
        }
        Ok(m)
    }
}

/// The whole parse: start line, header lines, framing, core headers.
fn parse_message(buf: Bytes) -> Result<Message> {
    let data = &buf[..];
    if data.len() > u32::MAX as usize {
        return Err(ParseError::new(ErrorKind::TooLarge, "message too large"));
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line
    let begin = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    if begin == data.len() {
        return Err(ParseError::new(ErrorKind::StartLine, "empty message"));
    }
    let (start_end, mut pos) = line_end(data, begin)
        .ok_or_else(|| ParseError::new(ErrorKind::Incomplete, "no header section"))?;

    let incomplete = || {
        ParseError::new(
            ErrorKind::Incomplete,
            "header section not terminated by an empty line",
        )
    };
    let mut entries = Vec::with_capacity(16);
    let body_start = loop {
        // `pos` starts a line that does not continue a header (folds are taken below)
        let Some(&first) = data.get(pos) else {
            return Err(incomplete());
        };
        if scan::is_token(first) && entries.len() < MAX_HEADERS {
            if let Some(l) = simple_line(&data[pos..]) {
                let at = |i: usize| (pos + i) as u32;
                entries.push(Entry {
                    known: l.known,
                    line: (at(0), at(l.line_end)),
                    name: (at(0), at(l.name_end)),
                    value: (at(l.value.0), at(l.value.1)),
                });
                pos += l.next;
                continue;
            }
        }
        // any other line: the general case
        // fast path: `Name: value` with the name and the value on this line, looked at
        // before the end of the line is searched for (from the value on)
        let fast = if scan::is_token(first) {
            name_and_value(data, pos)
        } else {
            None
        };
        let from = fast.map_or(pos, |(_, vs, _)| vs);
        let Some(nl) = scan::find_byte_wide(&data[from..], b'\n') else {
            return Err(incomplete());
        };
        let (mut end, mut next) = ends(data, pos, from + nl);
        if end == pos {
            break next;
        }
        if first == b' ' || first == b'\t' {
            // (after a header, its continuation lines are taken below)
            return Err(ParseError::new(
                ErrorKind::HeaderLine,
                "continuation line before the first header",
            ));
        }
        // continuation lines (RFC 3261 §7.3.1)
        while let Some(b' ' | b'\t') = data.get(next) {
            let Some(nl) = scan::find_byte_wide(&data[next..], b'\n') else {
                return Err(incomplete());
            };
            (end, next) = ends(data, next, next + nl);
        }
        // a header is only judged once the line after it is complete
        let seen = |e: ParseError| {
            if scan::find_byte_wide(&data[next..], b'\n').is_some() {
                e
            } else {
                incomplete()
            }
        };
        entries.push(field(data, pos, end, fast).map_err(seen)?);
        if entries.len() > MAX_HEADERS
            && !data[next..].starts_with(b"\n")
            && !data[next..].starts_with(b"\r\n")
        {
            return Err(seen(ParseError::new(
                ErrorKind::TooLarge,
                "too many headers",
            )));
        }
        pos = next;
    };
    check_limits(data, begin..start_end, body_start, &entries)?;
    index_message(buf, begin, start_end, entries, body_start, &[])
}

/// The per-message limits a hostile peer meets (RFC 3261 §21.4): the request line
/// ([`MAX_REQUEST_LINE`], 414), each header line ([`MAX_LINE_LENGTH`]) and the Via values
/// ([`MAX_VIAS`]), both 513.
fn check_limits(
    data: &[u8],
    start: std::ops::Range<usize>,
    body_start: usize,
    entries: &[Entry],
) -> Result<()> {
    if start.len() > MAX_REQUEST_LINE {
        let kind = if data[start].starts_with(b"SIP/") {
            ErrorKind::TooLarge
        } else {
            ErrorKind::UriTooLong
        };
        return Err(ParseError::new(kind, "Request-URI too long"));
    }
    // a header section this short can hold neither a line too long nor too many Vias (the
    // shortest Via value, `SIP/2.0/UDP h`, and its comma take 14 bytes): most messages stop here
    if body_start - start.end < 14 * MAX_VIAS {
        return Ok(());
    }
    let mut vias = 0;
    for e in entries {
        let (from, to) = (e.line.0 as usize, e.line.1 as usize);
        if to - from > MAX_LINE_LENGTH {
            return Err(ParseError::new(ErrorKind::TooLarge, "header line too long"));
        }
        if e.known == Some(Known::Via) {
            let value = &data[e.value.0 as usize..e.value.1 as usize];
            vias += 1 + memchr::memchr_iter(b',', value).count();
        }
    }
    if vias > MAX_VIAS {
        return Err(ParseError::new(ErrorKind::TooLarge, "too many Via headers"));
    }
    Ok(())
}

/// The checks that follow the line scan: framing (Content-Length), the core headers, the
/// start line. `entries` index the header lines of `buf`, whose start line is
/// `begin..start_end` and whose body starts at `body_start`; `checked` gives what is already
/// known of some core lines (by entry).
fn index_message(
    buf: Bytes,
    begin: usize,
    start_end: usize,
    entries: Vec<Entry>,
    body_start: usize,
    checked: &[(usize, Checked)],
) -> Result<Message> {
    let data = &buf[..];
    // framing: Content-Length
    let mut content_length: Option<u32> = None;
    for e in entries
        .iter()
        .filter(|e| e.known == Some(Known::ContentLength))
    {
        let n = ContentLength::parse(&data[span(e.value)])
            .map_err(|_| {
                ParseError::in_header(ErrorKind::ContentLength, "Content-Length", "not a number")
            })?
            .0;
        if content_length.is_some_and(|m| m != n) {
            return Err(ParseError::in_header(
                ErrorKind::ContentLength,
                "Content-Length",
                "two different values",
            ));
        }
        content_length = Some(n);
    }
    let available = data.len() - body_start;
    let body_end = match content_length {
        Some(n) if n as usize > available => {
            return Err(ParseError::in_header(
                ErrorKind::ContentLength,
                "Content-Length",
                "larger than the body",
            ))
        }
        Some(n) => body_start + n as usize,
        None => data.len(),
    };

    let core = parse_core(data, &entries, checked)?;
    let head = Head(std::sync::Arc::new(HeadData {
        start: (begin as u32, start_end as u32),
        entries,
        body: (body_start as u32, body_end as u32),
        core,
        pristine: true,
        uri: OnceLock::new(),
        vias_parse: AtomicBool::new(false),
        via_text: OnceLock::new(),
        buf,
    }));
    let msg = parse_start_line(head)?;
    if let Message::Request(r) = &msg {
        if r.head.core.cseq.method != r.method {
            return Err(ParseError::in_header(
                ErrorKind::CSeqMismatch,
                "CSeq",
                "method does not match the request",
            ));
        }
    }
    Ok(msg)
}

/// End of the line starting at `pos` (before CR LF or a bare LF) and the start of the next.
fn line_end(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + scan::find_byte(&data[pos..], b'\n')?;
    let end = if nl > pos && data[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// The end of the header name, the start of the value and the known name of the header line
/// at `pos`, when it is `token *(SP / HTAB) ":" *(SP / HTAB)` and a value on the same line;
/// `None` otherwise (then [`field_slow`] looks at the whole header once it is complete).
#[inline]
fn name_and_value(data: &[u8], pos: usize) -> Option<(usize, usize, Option<Known>)> {
    let rest = &data[pos..];
    // the first colon: a token has none, so it ends the name (and its blanks) if anything does
    let colon = scan::find_byte(rest, b':')?;
    let (name, value) = rest.split_at(colon);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let name = match name.last() {
        Some(b) if blank(b) => {
            let ne = name.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
            &name[..ne]
        }
        _ => name,
    };
    // a known spelling is a token; anything else must be checked
    let known = Known::lookup_in(rest, name.len());
    if known.is_none() && !scan::all_token(name) {
        return None;
    }
    let value = &value[1..];
    let skip = value.iter().position(|b| !blank(b))?;
    match value[skip] {
        b'\r' | b'\n' => None,
        _ => Some((pos + name.len(), pos + colon + 1 + skip, known)),
    }
}

/// A header that is one line `Name: value` (at most one blank after the colon) followed by
/// a line that does not continue it, as offsets from its first byte.
struct SimpleLine {
    known: Option<Known>,
    name_end: usize,
    value: (usize, usize),
    line_end: usize,
    next: usize,
}

/// The common header line, found in one straight pass (the general case in [`parse_message`]
/// finds the same entry for it); `None` for anything else.
#[inline(always)]
fn simple_line(rest: &[u8]) -> Option<SimpleLine> {
    let colon = scan::find_byte(rest, b':')?;
    let (name, after) = rest.split_at(colon);
    // a known spelling is a token; anything else must be checked
    let known = Known::lookup_in(rest, name.len());
    if known.is_none() && !scan::all_token(name) {
        return None;
    }
    let vs = match after {
        [_, b' ' | b'\t', b, ..] if !scan::is_ws(*b) => colon + 2,
        [_, b, ..] if !scan::is_ws(*b) => colon + 1,
        _ => return None,
    };
    let value = &rest[vs..];
    let nl = scan::find_byte_wide_inline(value, b'\n')?;
    match value.get(nl + 1) {
        Some(b' ' | b'\t') | None => return None,
        Some(_) => {}
    }
    let line = &value[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // value[0] is not whitespace
    let ve = line
        .iter()
        .rposition(|&b| !scan::is_ws(b))
        .map_or(0, |i| i + 1);
    Some(SimpleLine {
        known,
        name_end: colon,
        value: (vs, vs + ve),
        line_end: vs + line.len(),
        next: vs + nl + 1,
    })
}

/// The end of the line whose LF is at `nl` (before its CR, if any, that is not its first
/// byte `pos`) and the start of the next.
#[inline]
fn ends(data: &[u8], pos: usize, nl: usize) -> (usize, usize) {
    let end = if nl > pos && data[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    (end, nl + 1)
}

/// The entry of the header on lines `start..end` (folds included), with what
/// [`name_and_value`] found on its first line.
#[inline]
fn field(
    data: &[u8],
    start: usize,
    end: usize,
    fast: Option<(usize, usize, Option<Known>)>,
) -> Result<Entry> {
    let Some((ne, vs, known)) = fast else {
        return field_slow(data, start, end);
    };
    // data[vs] is not whitespace, so the trim stops there
    let mut ve = end;
    while ve > vs && scan::is_ws(data[ve - 1]) {
        ve -= 1;
    }
    Ok(Entry {
        known,
        line: (start as u32, end as u32),
        name: (start as u32, ne as u32),
        value: (vs as u32, ve as u32),
    })
}

#[cold]
#[inline(never)]
fn field_slow(data: &[u8], start: usize, end: usize) -> Result<Entry> {
    let line = &data[start..end];
    // the name is a token, then optional whitespace, then the colon
    let mut ne = 0;
    while ne < line.len() && scan::is_token(line[ne]) {
        ne += 1;
    }
    let mut colon = ne;
    while colon < line.len() && (line[colon] == b' ' || line[colon] == b'\t') {
        colon += 1;
    }
    if ne == 0 || colon >= line.len() || line[colon] != b':' {
        return Err(ParseError::new(
            ErrorKind::HeaderLine,
            if line[ne..].contains(&b':') {
                "bad header name"
            } else {
                "header line without a colon"
            },
        ));
    }
    let mut vs = colon + 1;
    while vs < line.len() && scan::is_ws(line[vs]) {
        vs += 1;
    }
    let mut ve = line.len();
    while ve > vs && scan::is_ws(line[ve - 1]) {
        ve -= 1;
    }
    let at = |i: usize| (start + i) as u32;
    Ok(Entry {
        known: HeaderName::known(&line[..ne]),
        line: (at(0), at(line.len())),
        name: (at(0), at(ne)),
        value: (at(vs), at(ve)),
    })
}

fn parse_core(data: &[u8], entries: &[Entry], checked: &[(usize, Checked)]) -> Result<Core> {
    let known = |i: usize| checked.iter().find(|(at, _)| *at == i).map(|(_, c)| c);
    let mut top_via: Option<TopVia> = None;
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut max_forwards = None;
    fn once(slot: &mut Option<usize>, i: usize, name: &'static str) -> Result<()> {
        if slot.is_some() {
            return Err(ParseError::in_header(
                ErrorKind::DuplicateHeader,
                name,
                "allows one value",
            ));
        }
        *slot = Some(i);
        Ok(())
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(name) = e.known else { continue };
        match name {
            Known::Via if top_via.is_none() => {
                // the top Via is the transaction key: check it now; the others on first use
                if let Some(Checked::TopVia(v)) = known(i) {
                    top_via = Some(v.clone());
                    continue;
                }
                let p = ViaParts::check_first(&data[span(e.value)])?;
                top_via = Some(TopVia {
                    transport: Transport::parse(p.transport),
                    host: span_of(data, p.host),
                    port: p.port,
                    branch: p.branch.map(|b| span_of(data, b)),
                });
            }
            Known::From => once(&mut from, i, "From")?,
            Known::To => once(&mut to, i, "To")?,
            Known::CallId => once(&mut call_id, i, "Call-ID")?,
            Known::CSeq => once(&mut cseq, i, "CSeq")?,
            Known::MaxForwards => once(&mut max_forwards, i, "Max-Forwards")?,
            _ => {}
        }
    }
    let missing = |name| ParseError::in_header(ErrorKind::MissingHeader, name, "missing");
    let value = |i: usize| &data[span(entries[i].value)];
    let top_via = top_via.ok_or_else(|| missing("Via"))?;
    let from = from.ok_or_else(|| missing("From"))?;
    let to = to.ok_or_else(|| missing("To"))?;
    // a line copied with what its source's parse found in it is not checked again
    let tag = |i: usize, header: &'static str| -> Result<Option<Span>> {
        if let Some(Checked::Tag(t)) = known(i) {
            return Ok(*t);
        }
        let t = name_addr::key_check(value(i)).map_err(|e| e.with_header_name(header))?;
        Ok(t.map(|t| span_of(data, t)))
    };
    let from_tag = tag(from, "From")?;
    let to_tag = tag(to, "To")?;
    let call_id = call_id.ok_or_else(|| missing("Call-ID"))?;
    let call_id = match known(call_id) {
        Some(Checked::CallId(c)) => *c,
        _ => span_of(data, check_call_id(value(call_id))?),
    };
    let cseq = cseq.ok_or_else(|| missing("CSeq"))?;
    let cseq = match known(cseq) {
        Some(Checked::CSeq(c)) => c.clone(),
        _ => CSeq::parse(value(cseq))?,
    };
    Ok(Core {
        top_via,
        call_id,
        cseq,
        max_forwards: max_forwards
            .map(|i| parse_max_forwards(value(i)))
            .transpose()?,
        from,
        to,
        from_tag,
        to_tag,
        lazy: OnceLock::new(),
    })
}

fn is_version(v: &[u8]) -> bool {
    v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&b| b.is_ascii_digit() || b == b'.')
}

fn parse_start_line(head: Head) -> Result<Message> {
    let bad = |r| ParseError::new(ErrorKind::StartLine, r);
    let buf = &head.buf[..];
    let line = &buf[span(head.start)];
    if line.starts_with(b"SIP/") || line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp =
            scan::find_byte(line, b' ').ok_or_else(|| bad("status line without a status code"))?;
        if &line[..sp] != b"SIP/2.0" && !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::new(
                ErrorKind::Version,
                "SIP version not supported",
            ));
        }
        let rest = &line[sp + 1..];
        let (code, reason) = match scan::find_byte(rest, b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]), // tolerate a missing space before an empty reason
        };
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::new(
                ErrorKind::StatusCode,
                "status code is not three digits",
            ));
        }
        let status = code.iter().fold(0u16, |v, &b| v * 10 + u16::from(b - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(
                ErrorKind::StatusCode,
                "status code out of range",
            ));
        }
        let reason = span_of(buf, reason);
        return Ok(Message::Response(Response {
            status,
            reason,
            head,
        }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = scan::find_byte(line, b' ')
        .ok_or_else(|| bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let rest = &line[sp1 + 1..];
    let sp2 = scan::find_byte(rest, b' ')
        .ok_or_else(|| bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let method = Method::parse(&line[..sp1])?;
    let uri_bytes = &rest[..sp2];
    // trailing whitespace after the version is tolerated (RFC 4475 §3.1.2.10 allows either)
    let version = scan::trim(&rest[sp2 + 1..]);
    if version != b"SIP/2.0" && !version.eq_ignore_ascii_case(b"SIP/2.0") {
        if is_version(version) {
            return Err(ParseError::new(
                ErrorKind::Version,
                "SIP version not supported",
            ));
        }
        return Err(bad("request line is not 'METHOD URI SIP/2.0'"));
    }
    check_uri(uri_bytes).map_err(|e| ParseError::new(ErrorKind::Uri, uri_reason(e.reason())))?;
    Ok(Message::Request(Request {
        method,
        uri_span: span_of(buf, uri_bytes),
        head,
    }))
}

fn uri_reason(reason: &'static str) -> &'static str {
    match reason {
        "bad port" => "bad Request-URI: bad port (IPv6 addresses need brackets)",
        _ => "bad Request-URI",
    }
}

impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for Request {}

impl PartialEq for Response {
    fn eq(&self, other: &Response) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl Eq for Response {}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}
