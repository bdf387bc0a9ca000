//! SIP messages (RFC 3261 §7): requests and responses, their parsing from bytes, validation as
//! a UAS applies it (§8.2, RFC 4475), and serialisation.
//!
//! Parsing is lazy and lossless. [`Message::parse`] finds the start line, splits the header
//! section into fields (unfolding nothing, copying nothing but the input once), checks framing
//! and parses only the headers every layer needs at once: Via, From, To, Call-ID, CSeq,
//! Max-Forwards and Content-Length. Everything else is parsed when asked for, with
//! [`Request::typed`] and friends. A message that is not modified serialises back byte for
//! byte; after a change, untouched header lines are still written as they came.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorKind, ParseError, Result};
use crate::header::{
    parse_call_id, parse_max_forwards, CSeq, Contact, ContentLength, ContentType, Header, HeaderName, Headers,
    MediaType, TypedHeader, Via,
};
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::scan;
use crate::uri::Uri;

/// Most header lines accepted in one message; more is treated as an attack.
pub const MAX_HEADERS: usize = 512;

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// A SIP request: method, Request-URI, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) head: Head,
}

/// A SIP response: status code, reason phrase, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) head: Head,
}

/// What requests and responses share: headers, body, the parsed core headers, and the
/// original bytes while the message is unmodified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
    pub(crate) core: Core,
    /// The original start line (without CRLF) while the start line is unchanged.
    pub(crate) start_raw: Option<Bytes>,
    /// The original message (start line to end of body) while nothing is changed.
    pub(crate) raw: Option<Bytes>,
}

/// Headers parsed eagerly because every layer needs them (RFC 3261 §8.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Core {
    pub(crate) via: Vec<Via>,
    pub(crate) from: NameAddr,
    pub(crate) to: NameAddr,
    pub(crate) call_id: String,
    pub(crate) cseq: CSeq,
    pub(crate) max_forwards: Option<u8>,
}

fn is_core(name: &HeaderName) -> bool {
    matches!(
        name,
        HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::MaxForwards
            | HeaderName::ContentLength
    )
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
    /// assert_eq!(msg.top_via().branch(), Some("z9hG4bK776asdhds"));
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

    fn head_mut(&mut self) -> &mut Head {
        match self {
            Message::Request(r) => &mut r.head,
            Message::Response(r) => &mut r.head,
        }
    }

    /// The wire form: the original bytes if unmodified, else a fresh serialisation.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// Methods shared by [`Message`], [`Request`] and [`Response`].
macro_rules! common_methods {
    () => {
        /// All header fields in order.
        pub fn headers(&self) -> &Headers {
            &self.head().headers
        }

        /// The body (exactly Content-Length bytes).
        pub fn body(&self) -> &Bytes {
            &self.head().body
        }

        /// Every Via, top first.
        pub fn via(&self) -> &[Via] {
            &self.head().core.via
        }

        /// The top Via: the transaction's branch and sent-by (RFC 3261 §17.1.3, §17.2.3).
        pub fn top_via(&self) -> &Via {
            // parsing and building both guarantee at least one Via
            &self.head().core.via[0]
        }

        /// The From header.
        pub fn from(&self) -> &NameAddr {
            &self.head().core.from
        }

        /// The To header.
        pub fn to(&self) -> &NameAddr {
            &self.head().core.to
        }

        /// The Call-ID.
        pub fn call_id(&self) -> &str {
            &self.head().core.call_id
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
            self.head().headers.typed()
        }

        /// Every value of a typed header, across lines and commas.
        pub fn typed_all<T: TypedHeader>(&self) -> Result<Vec<T>> {
            self.head().headers.typed_all()
        }

        /// The Contact values (`*` included).
        pub fn contacts(&self) -> Result<Vec<Contact>> {
            self.typed_all()
        }

        /// The Content-Type, if present and well-formed.
        pub fn content_type(&self) -> Option<MediaType> {
            self.typed::<ContentType>().and_then(|r| r.ok()).map(|c| c.0)
        }

        /// Whether the message has not been modified since it was parsed (so it
        /// serialises to exactly the bytes received).
        pub fn is_pristine(&self) -> bool {
            self.head().raw.is_some()
        }

        /// Replaces every header of `h`'s name with `h`. Core headers (Via, From, To, Call-ID,
        /// CSeq, Max-Forwards) are validated first; Content-Length follows the body and cannot
        /// be set.
        pub fn set_header(&mut self, h: Header) -> Result<()> {
            self.head_mut().set_header(h)
        }

        /// Appends a header line (for Via, use `push_via`, which puts it on top).
        pub fn push_header(&mut self, h: Header) -> Result<()> {
            self.head_mut().push_header(h)
        }

        /// Removes every header named `name`; the mandatory core headers cannot be removed.
        pub fn remove_header(&mut self, name: &HeaderName) -> Result<usize> {
            self.head_mut().remove_header(name)
        }

        /// Puts a Via on top (what a proxy or a UAC does when sending, RFC 3261 §8.1.1.7).
        pub fn push_via(&mut self, via: Via) {
            self.head_mut().push_via(via)
        }

        /// Removes the top Via (what a UAC or proxy does with a response, RFC 3261 §18.1.2);
        /// refuses to remove the last one.
        pub fn pop_via(&mut self) -> Option<Via> {
            self.head_mut().pop_via()
        }

        /// Sets the tag of the To header (a UAS creating a dialog, RFC 3261 §8.2.6.2).
        pub fn set_to_tag(&mut self, tag: &str) {
            let mut to = self.to().clone();
            to.set_tag(tag);
            self.head_mut().replace_core(Header::new(HeaderName::To, to.to_string()), |c| c.to = to);
        }

        /// Replaces the body, setting Content-Type (removed when `None`) and Content-Length.
        pub fn set_body(&mut self, content_type: Option<&MediaType>, body: Bytes) {
            self.head_mut().set_body(content_type, body)
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

    fn head_mut(&mut self) -> &mut Head {
        &mut self.head
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Changes the Request-URI (a proxy retargeting, a UAC following a redirect).
    pub fn set_uri(&mut self, uri: Uri) {
        self.uri = uri;
        self.head.start_raw = None;
        self.head.raw = None;
    }

    /// Sets Max-Forwards.
    pub fn set_max_forwards(&mut self, n: u8) {
        self.head.replace_core(Header::new(HeaderName::MaxForwards, n.to_string()), |c| c.max_forwards = Some(n));
    }

    /// The wire form: the original bytes if unmodified, else a fresh serialisation.
    pub fn to_bytes(&self) -> Bytes {
        self.head.to_bytes(|out| {
            out.put_slice(self.method.as_str().as_bytes());
            out.put_u8(b' ');
            out.put_slice(self.uri.to_string().as_bytes());
            out.put_slice(b" SIP/2.0");
        })
    }
}

impl Response {
    common_methods!();

    fn head(&self) -> &Head {
        &self.head
    }

    fn head_mut(&mut self) -> &mut Head {
        &mut self.head
    }

    /// The status code (100 to 699).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (lossy UTF-8; the exact bytes stay in [`Response::to_bytes`]).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// Whether this is a 2xx response.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The wire form: the original bytes if unmodified, else a fresh serialisation.
    pub fn to_bytes(&self) -> Bytes {
        self.head.to_bytes(|out| {
            out.put_slice(b"SIP/2.0 ");
            out.put_slice(self.status.to_string().as_bytes());
            out.put_u8(b' ');
            out.put_slice(self.reason.as_bytes());
        })
    }
}

impl Head {
    fn changed(&mut self) {
        self.raw = None;
    }

    fn to_bytes(&self, start_line: impl FnOnce(&mut BytesMut)) -> Bytes {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = BytesMut::with_capacity(64 + self.headers.encoded_len() + self.body.len());
        match &self.start_raw {
            Some(s) => out.put_slice(s),
            None => start_line(&mut out),
        }
        out.put_slice(b"\r\n");
        for h in &self.headers {
            h.write_to(&mut out);
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }

    /// Replaces a core header line and updates the parsed copy with `update`.
    fn replace_core(&mut self, h: Header, update: impl FnOnce(&mut Core)) {
        self.headers.set(h);
        update(&mut self.core);
        self.changed();
    }

    fn set_header(&mut self, h: Header) -> Result<()> {
        let name = h.name().clone();
        match name {
            HeaderName::ContentLength => {
                return Err(ParseError::in_header(ErrorKind::HeaderValue, "Content-Length", "follows the body; use set_body"))
            }
            HeaderName::Via => {
                let vias = parse_vias(std::iter::once(h.value()))?;
                self.replace_core(h, |c| c.via = vias);
            }
            HeaderName::From => {
                let v = parse_name_addr(h.value(), "From")?;
                self.replace_core(h, |c| c.from = v);
            }
            HeaderName::To => {
                let v = parse_name_addr(h.value(), "To")?;
                self.replace_core(h, |c| c.to = v);
            }
            HeaderName::CallId => {
                let v = parse_call_id(h.value())?;
                self.replace_core(h, |c| c.call_id = v);
            }
            HeaderName::CSeq => {
                let v = CSeq::parse(h.value())?;
                self.replace_core(h, |c| c.cseq = v);
            }
            HeaderName::MaxForwards => {
                let v = parse_max_forwards(h.value())?;
                self.replace_core(h, |c| c.max_forwards = Some(v));
            }
            _ => {
                self.headers.set(h);
                self.changed();
            }
        }
        Ok(())
    }

    fn push_header(&mut self, h: Header) -> Result<()> {
        match h.name() {
            HeaderName::Via => {
                let mut vias = parse_vias(std::iter::once(h.value()))?;
                self.core.via.append(&mut vias);
                self.headers.push(h);
            }
            n if is_core(n) => {
                return Err(ParseError::in_header(
                    ErrorKind::DuplicateHeader,
                    n.static_name(),
                    "allows one value; use set_header",
                ))
            }
            _ => self.headers.push(h),
        }
        self.changed();
        Ok(())
    }

    fn remove_header(&mut self, name: &HeaderName) -> Result<usize> {
        if is_core(name) && *name != HeaderName::MaxForwards {
            return Err(ParseError::in_header(ErrorKind::MissingHeader, name.static_name(), "is mandatory"));
        }
        if *name == HeaderName::MaxForwards {
            self.core.max_forwards = None;
        }
        let n = self.headers.remove(name);
        if n > 0 {
            self.changed();
        }
        Ok(n)
    }

    fn push_via(&mut self, via: Via) {
        let at = self.headers.0.iter().position(|h| *h.name() == HeaderName::Via).unwrap_or(0);
        self.headers.insert(at, Header::new(HeaderName::Via, via.to_string()));
        self.core.via.insert(0, via);
        self.changed();
    }

    fn pop_via(&mut self) -> Option<Via> {
        if self.core.via.len() < 2 {
            return None;
        }
        self.headers.remove_first_value(&HeaderName::Via);
        self.changed();
        Some(self.core.via.remove(0))
    }

    fn set_body(&mut self, content_type: Option<&MediaType>, body: Bytes) {
        match content_type {
            Some(ct) => self.headers.set(Header::typed(&ContentType(ct.clone()))),
            None => {
                self.headers.remove(&HeaderName::ContentType);
            }
        }
        self.headers.set(Header::new(HeaderName::ContentLength, body.len().to_string()));
        self.body = body;
        self.changed();
    }
}

fn parse_vias<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Via>> {
    let mut out = Vec::with_capacity(2);
    for v in values {
        for part in scan::split_commas(v) {
            if part.is_empty() {
                return Err(ParseError::in_header(ErrorKind::HeaderValue, "Via", "empty value"));
            }
            out.push(Via::parse(part)?);
        }
    }
    Ok(out)
}

fn parse_name_addr(v: &[u8], header: &'static str) -> Result<NameAddr> {
    NameAddr::parse(v).map_err(|e| {
        ParseError::in_header(ErrorKind::HeaderValue, header, e.reason())
    })
}

/// The whole parse: start line, header fields, framing, core headers.
fn parse_message(buf: Bytes) -> Result<Message> {
    let data = &buf[..];
    // RFC 3261 §7.5: ignore CRLFs before the start line
    let begin = data.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(data.len());
    if begin == data.len() {
        return Err(ParseError::new(ErrorKind::StartLine, "empty message"));
    }
    let (start_end, mut pos) = line_end(data, begin).ok_or(ParseError::new(ErrorKind::Incomplete, "no header section"))?;
    let start_line = &data[begin..start_end];

    let mut headers = Vec::with_capacity(16);
    let mut body_start = None;
    // (line start, line end) of the header being collected
    let mut current: Option<(usize, usize)> = None;
    while pos < data.len() {
        let (end, next) = match line_end(data, pos) {
            Some(x) => x,
            None => break,
        };
        if end == pos {
            if let Some((s, e)) = current.take() {
                headers.push(field(&buf, s, e)?);
            }
            body_start = Some(next);
            break;
        }
        if data[pos] == b' ' || data[pos] == b'\t' {
            match &mut current {
                Some((_, e)) => *e = end,
                None => return Err(ParseError::new(ErrorKind::HeaderLine, "continuation line before the first header")),
            }
        } else {
            if let Some((s, e)) = current.take() {
                headers.push(field(&buf, s, e)?);
                if headers.len() > MAX_HEADERS {
                    return Err(ParseError::new(ErrorKind::TooLarge, "too many headers"));
                }
            }
            current = Some((pos, end));
        }
        pos = next;
    }
    let body_start = body_start.ok_or(ParseError::new(ErrorKind::Incomplete, "header section not terminated by an empty line"))?;

    // framing: Content-Length
    let mut content_length: Option<u32> = None;
    for h in headers.iter().filter(|h| *h.name() == HeaderName::ContentLength) {
        let n = ContentLength::parse(h.value())
            .map_err(|_| ParseError::in_header(ErrorKind::ContentLength, "Content-Length", "not a number"))?
            .0;
        if content_length.is_some_and(|m| m != n) {
            return Err(ParseError::in_header(ErrorKind::ContentLength, "Content-Length", "two different values"));
        }
        content_length = Some(n);
    }
    let available = data.len() - body_start;
    let body_end = match content_length {
        Some(n) if n as usize > available => {
            return Err(ParseError::in_header(ErrorKind::ContentLength, "Content-Length", "larger than the body"))
        }
        Some(n) => body_start + n as usize,
        None => data.len(),
    };

    let core = parse_core(&headers)?;
    let head = Head {
        headers: Headers(headers),
        body: buf.slice(body_start..body_end),
        core,
        start_raw: Some(buf.slice(begin..start_end)),
        raw: Some(buf.slice(begin..body_end)),
    };
    let msg = parse_start_line(start_line, head)?;
    if let Message::Request(r) = &msg {
        if r.head.core.cseq.method != r.method {
            return Err(ParseError::in_header(ErrorKind::CSeqMismatch, "CSeq", "method does not match the request"));
        }
    }
    Ok(msg)
}

/// End of the line starting at `pos` (before CR LF or a bare LF) and the start of the next.
fn line_end(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + memchr::memchr(b'\n', &data[pos..])?;
    let end = if nl > pos && data[nl - 1] == b'\r' { nl - 1 } else { nl };
    Some((end, nl + 1))
}

fn field(buf: &Bytes, start: usize, end: usize) -> Result<Header> {
    let line = &buf[start..end];
    let colon = memchr::memchr(b':', line).ok_or(ParseError::new(ErrorKind::HeaderLine, "header line without a colon"))?;
    let name = scan::trim(&line[..colon]);
    if !scan::all_token(name) || line[..colon].first().is_some_and(|&b| scan::is_ws(b)) {
        return Err(ParseError::new(ErrorKind::HeaderLine, "bad header name"));
    }
    let mut vs = colon + 1;
    while vs < line.len() && scan::is_ws(line[vs]) {
        vs += 1;
    }
    let mut ve = line.len();
    while ve > vs && scan::is_ws(line[ve - 1]) {
        ve -= 1;
    }
    Ok(Header::from_line(HeaderName::from_bytes(name), buf.slice(start..end), vs..ve))
}

fn parse_core(headers: &[Header]) -> Result<Core> {
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut max_forwards = None;
    let mut via = Vec::with_capacity(2);
    fn once<'a>(slot: &mut Option<&'a Header>, h: &'a Header, name: &'static str) -> Result<()> {
        if slot.is_some() {
            return Err(ParseError::in_header(ErrorKind::DuplicateHeader, name, "allows one value"));
        }
        *slot = Some(h);
        Ok(())
    }
    for h in headers {
        match h.name() {
            HeaderName::Via => {
                for part in scan::split_commas(h.value()) {
                    if part.is_empty() {
                        return Err(ParseError::in_header(ErrorKind::HeaderValue, "Via", "empty value"));
                    }
                    via.push(Via::parse(part)?);
                }
            }
            HeaderName::From => once(&mut from, h, "From")?,
            HeaderName::To => once(&mut to, h, "To")?,
            HeaderName::CallId => once(&mut call_id, h, "Call-ID")?,
            HeaderName::CSeq => once(&mut cseq, h, "CSeq")?,
            HeaderName::MaxForwards => once(&mut max_forwards, h, "Max-Forwards")?,
            _ => {}
        }
    }
    let missing = |name| ParseError::in_header(ErrorKind::MissingHeader, name, "missing");
    if via.is_empty() {
        return Err(missing("Via"));
    }
    Ok(Core {
        via,
        from: parse_name_addr(from.ok_or(missing("From"))?.value(), "From")?,
        to: parse_name_addr(to.ok_or(missing("To"))?.value(), "To")?,
        call_id: parse_call_id(call_id.ok_or(missing("Call-ID"))?.value())?,
        cseq: CSeq::parse(cseq.ok_or(missing("CSeq"))?.value())?,
        max_forwards: max_forwards.map(|h| parse_max_forwards(h.value())).transpose()?,
    })
}

fn is_version(v: &[u8]) -> bool {
    v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&b| b.is_ascii_digit() || b == b'.')
}

fn parse_start_line(line: &[u8], head: Head) -> Result<Message> {
    let bad = |r| ParseError::new(ErrorKind::StartLine, r);
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(bad("status line without a status code"))?;
        let version = &line[..sp];
        if !version.eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::new(ErrorKind::Version, "SIP version not supported"));
        }
        let rest = &line[sp + 1..];
        let (code, reason) = match memchr::memchr(b' ', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]), // tolerate a missing space before an empty reason
        };
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::new(ErrorKind::StatusCode, "status code is not three digits"));
        }
        let status = code.iter().fold(0u16, |v, &b| v * 10 + u16::from(b - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(ErrorKind::StatusCode, "status code out of range"));
        }
        return Ok(Message::Response(Response { status, reason: scan::string(reason), head }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or(bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest).ok_or(bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let method = Method::parse(&line[..sp1])?;
    let uri_bytes = &rest[..sp2];
    // trailing whitespace after the version is tolerated (RFC 4475 §3.1.2.10 allows either)
    let version = scan::trim(&rest[sp2 + 1..]);
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        if is_version(version) {
            return Err(ParseError::new(ErrorKind::Version, "SIP version not supported"));
        }
        return Err(bad("request line is not 'METHOD URI SIP/2.0'"));
    }
    let uri = Uri::parse(uri_bytes).map_err(|e| ParseError::new(ErrorKind::Uri, uri_reason(e.reason())))?;
    Ok(Message::Request(Request { method, uri, head }))
}

fn uri_reason(reason: &'static str) -> &'static str {
    match reason {
        "bad port" => "bad Request-URI: bad port (IPv6 addresses need brackets)",
        _ => "bad Request-URI",
    }
}

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
