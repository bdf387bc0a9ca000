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
//!
//! This file is the model: the message types, their index and accessors (about 1 050 lines,
//! one concern); parsing is in `parse.rs` and writing in `write.rs`.

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

mod parse;
mod write;
use parse::*;
pub(crate) use write::{write_decimal, write_display, ByteWriter, Writer};

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

        /// The top Via's transport (how the last hop sent the message), read in place when
        /// the Via is in the usual form, else from the parsed Via; `None` without a Via.
        pub fn top_via_transport(&self) -> Option<Transport> {
            match self.top_via_text() {
                Some(v) => Some(v.transport()),
                None => self.top_via().ok().map(|v| v.transport.clone()),
            }
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
