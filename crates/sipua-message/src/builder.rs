//! Building requests and responses in code (RFC 3261 §8.1.1, §8.2.6).
//!
//! A [`RequestBuilder`] needs the six headers every request carries (Via, From, To, Call-ID,
//! CSeq, Max-Forwards, the last defaulting to 70) and writes Content-Length itself.
//! [`Response::from_request`] copies Via, From, To, Call-ID and CSeq as §8.2.6.2 says, keeping
//! the request's exact Via lines.

use bytes::Bytes;

use crate::error::{ErrorKind, ParseError, Result};
use crate::header::{Header, HeaderName, Known, MediaType, TypedHeader, Via};
use crate::message::{
    write_decimal, write_display, ByteWriter, Checked, Message, Request, Response,
    TopVia as ViaKeySpans, Writer,
};
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::status::reason_phrase;
use crate::uri::Uri;

/// Builds a [`Request`].
///
/// ```
/// use sipua_message::{RequestBuilder, Method, Via, Transport, NameAddr, Uri, Host};
/// let uri: Uri = "sip:bob@biloxi.example.com".parse().unwrap();
/// let req = RequestBuilder::new(Method::Invite, uri.clone())
///     .via(Via::new(Transport::Udp, Host::Domain("pc33.atlanta.example.com".into()), None, "z9hG4bK776asdhds"))
///     .from("Alice <sip:alice@atlanta.example.com>;tag=1928301774".parse().unwrap())
///     .to(NameAddr::new(uri))
///     .call_id("a84b4c76e66710@pc33.atlanta.example.com")
///     .cseq(314159)
///     .build()
///     .unwrap();
/// assert!(req.to_bytes().starts_with(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"));
/// ```
///
/// Values are written into the builder's buffer as they are given (typed values through
/// their `Display` form), so the `_ref` methods take them by reference without a clone.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    /// The Request-URI, Vias, From, To and Call-ID as text, where the ranges below say.
    text: Vec<u8>,
    uri: Range,
    via: Vec<Range>,
    /// The top Via's transaction key, from the start of its value, when it is known without
    /// a check ([`RequestBuilder::via_branch`]).
    top_via_key: Option<ViaKeySpans>,
    from: Option<Range>,
    to: Option<Range>,
    call_id: Option<Range>,
    cseq: Option<u32>,
    max_forwards: u8,
    headers: Vec<Header>,
    body: Option<(MediaType, Bytes)>,
}

/// Where a value is in [`RequestBuilder::text`].
type Range = (u32, u32);

impl RequestBuilder {
    /// Starts a request for `method` to `uri`.
    pub fn new(method: Method, uri: Uri) -> RequestBuilder {
        RequestBuilder::new_ref(method, &uri)
    }

    /// [`RequestBuilder::new`] with a borrowed Request-URI.
    pub fn new_ref(method: Method, uri: &Uri) -> RequestBuilder {
        let mut text = Vec::with_capacity(256);
        let _ = uri.write_to(&mut ByteWriter(&mut text));
        RequestBuilder::with_uri_text(method, text)
    }

    /// [`RequestBuilder::new`] with the Request-URI as text: a URI as its `Display` wrote it
    /// (a dialog's remote target, kept written), copied without parsing. The request parses
    /// it when it is read, as it would a peer's.
    pub fn new_text(method: Method, uri: &str) -> RequestBuilder {
        let mut text = Vec::with_capacity(256);
        text.extend_from_slice(uri.as_bytes());
        RequestBuilder::with_uri_text(method, text)
    }

    /// A builder whose text holds the Request-URI so far.
    fn with_uri_text(method: Method, text: Vec<u8>) -> RequestBuilder {
        RequestBuilder {
            method,
            uri: (0, text.len() as u32),
            text,
            via: Vec::new(),
            top_via_key: None,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            max_forwards: 70,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Appends what `write` writes to the text and says where it is.
    fn put(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Range {
        let start = self.text.len() as u32;
        write(&mut self.text);
        (start, self.text.len() as u32)
    }

    fn text(&self, r: Range) -> &[u8] {
        &self.text[r.0 as usize..r.1 as usize]
    }

    /// Adds a Via below those already added (the first one added is the top).
    pub fn via(mut self, via: Via) -> Self {
        let r = self.put(|t| {
            let _ = via.write_to(&mut ByteWriter(t));
        });
        self.via.push(r);
        self
    }

    /// Adds a Via value given as text, below those already added: what a UA that writes its
    /// own Via once (the branch aside) adds without making a [`Via`]. The top Via is checked
    /// when the request is built, as every Via of a parsed message is when first read.
    pub fn via_text(mut self, value: impl AsRef<str>) -> Self {
        let r = self.put(|t| t.extend_from_slice(value.as_ref().as_bytes()));
        self.via.push(r);
        self
    }

    /// Adds a Via value made of `template` with `branch` in its place, below those already
    /// added: a UA's own Via with the branch of a new request. When it is the top Via and
    /// `branch` is a token, the request is indexed with the key the template's check found,
    /// without checking the Via again.
    pub fn via_branch(mut self, template: &ViaTemplate, branch: &str) -> Self {
        let r = self.put(|t| {
            t.extend_from_slice(template.prefix.as_bytes());
            t.extend_from_slice(branch.as_bytes());
            t.extend_from_slice(template.suffix.as_bytes());
        });
        if self.via.is_empty() && crate::scan::all_token(branch.as_bytes()) {
            let at = template.prefix.len() as u32;
            self.top_via_key = Some(template.key.with_branch((at, at + branch.len() as u32)));
        }
        self.via.push(r);
        self
    }

    /// Sets From.
    pub fn from(self, from: NameAddr) -> Self {
        self.from_ref(&from)
    }

    /// Sets From from a borrowed address.
    pub fn from_ref(mut self, from: &NameAddr) -> Self {
        self.from = Some(self.put(|t| {
            let _ = from.write_to(&mut ByteWriter(t));
        }));
        self
    }

    /// Sets From from a borrowed address with its `tag` set to `tag` (as
    /// [`NameAddr::set_tag`] would on a copy): our address of record with a new tag.
    pub fn from_tagged(mut self, from: &NameAddr, tag: &str) -> Self {
        self.from = Some(self.put(|t| {
            let _ = from.write_tagged(&mut ByteWriter(t), tag);
        }));
        self
    }

    /// Sets From from an address as its `Display` wrote it (a dialog's own address with its
    /// tag, kept written), copied without parsing.
    pub fn from_text(mut self, from: &str) -> Self {
        self.from = Some(self.put(|t| t.extend_from_slice(from.as_bytes())));
        self
    }

    /// Sets To.
    pub fn to(self, to: NameAddr) -> Self {
        self.to_ref(&to)
    }

    /// Sets To from a borrowed address.
    pub fn to_ref(mut self, to: &NameAddr) -> Self {
        self.to = Some(self.put(|t| {
            let _ = to.write_to(&mut ByteWriter(t));
        }));
        self
    }

    /// Sets To from a borrowed address with its `tag` set to `tag` (as
    /// [`NameAddr::set_tag`] would on a copy): the To of a request inside a dialog.
    pub fn to_tagged(mut self, to: &NameAddr, tag: &str) -> Self {
        self.to = Some(self.put(|t| {
            let _ = to.write_tagged(&mut ByteWriter(t), tag);
        }));
        self
    }

    /// Sets To from an address with no `tag` parameter as its `Display` wrote it, with
    /// `;tag=` and `tag` after it: what [`RequestBuilder::to_tagged`] writes of that address
    /// (a dialog's peer, kept written).
    pub fn to_text_tagged(mut self, to: &str, tag: &str) -> Self {
        self.to = Some(self.put(|t| {
            t.extend_from_slice(to.as_bytes());
            let _ = crate::params::write_params_with(
                &mut ByteWriter(t),
                std::iter::empty(),
                &[("tag", Some(tag))],
            );
        }));
        self
    }

    /// Sets Call-ID.
    pub fn call_id(mut self, id: impl AsRef<str>) -> Self {
        self.call_id = Some(self.put(|t| t.extend_from_slice(id.as_ref().as_bytes())));
        self
    }

    /// Sets the CSeq number; the method is the request's.
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = Some(seq);
        self
    }

    /// Sets Max-Forwards (default 70, RFC 3261 §8.1.1.6).
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// Adds any other header line, in order.
    pub fn header(mut self, h: Header) -> Self {
        self.headers.push(h);
        self
    }

    /// Adds a typed header.
    pub fn typed<T: TypedHeader>(self, value: &T) -> Self {
        self.header(Header::typed(value))
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: MediaType, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    /// Checks the mandatory headers, writes the request and parses it back, so a built
    /// request is exactly what a peer will parse.
    pub fn build(self) -> Result<Request> {
        let missing = |name| ParseError::in_header(ErrorKind::MissingHeader, name, "missing");
        if self.via.is_empty() {
            return Err(missing("Via"));
        }
        for h in &self.headers {
            if matches!(
                h.name(),
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
                    | HeaderName::MaxForwards
                    | HeaderName::ContentLength
            ) {
                return Err(ParseError::in_header(
                    ErrorKind::DuplicateHeader,
                    h.name().static_name(),
                    "set it with its own builder method",
                ));
            }
        }
        let seq = self.cseq.ok_or(missing("CSeq"))?;
        let from = self.text(self.from.ok_or(missing("From"))?);
        let to = self.text(self.to.ok_or(missing("To"))?);
        let call_id = self.text(self.call_id.ok_or(missing("Call-ID"))?);
        let body = match &self.body {
            Some((_, body)) => &body[..],
            None => &[][..],
        };
        // one buffer, written in place: typed values go straight into it
        let extra: usize = self
            .headers
            .iter()
            .map(|h| h.name().as_str().len() + h.value().len() + 4)
            .sum();
        let mut w = Writer::new(
            200 + self.text.len() + extra + body.len(),
            self.via.len() + self.headers.len() + 8,
        );
        w.out.extend_from_slice(self.method.as_str().as_bytes());
        w.out.push(b' ');
        w.out.extend_from_slice(self.text(self.uri));
        w.out.extend_from_slice(b" SIP/2.0");
        w.end_start_line();
        for (i, &v) in self.via.iter().enumerate() {
            w.header(&HeaderName::Via, self.text(v));
            if let (0, Some(key)) = (i, &self.top_via_key) {
                w.last_value_checked(Checked::TopVia(key.clone()));
            }
        }
        w.header_with(&HeaderName::MaxForwards, |o| {
            write_decimal(o, u64::from(self.max_forwards))
        });
        w.header(&HeaderName::From, from);
        w.header(&HeaderName::To, to);
        w.header(&HeaderName::CallId, call_id);
        w.header_with(&HeaderName::CSeq, |o| write_cseq(o, seq, &self.method));
        // a number and a method of our own reads back as itself (an extension method might
        // spell a standard one or not be a token: it is checked)
        if !matches!(self.method, Method::Extension(_)) {
            w.last_value_checked(Checked::CSeq(crate::header::CSeq {
                seq,
                method: self.method.clone(),
            }));
        }
        for h in &self.headers {
            w.header(h.name(), h.value());
        }
        if let Some((ct, _)) = &self.body {
            w.header_with(&HeaderName::ContentType, |o| write_display(o, ct));
        }
        w.header_with(&HeaderName::ContentLength, |o| {
            write_decimal(o, body.len() as u64)
        });
        match w.finish(body)? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::new(ErrorKind::StartLine, "not a request")),
        }
    }
}

/// A Via value around its branch, checked once: `prefix` ends with `branch=` and `suffix`
/// holds what follows the branch value (`;rport`). The Via of each request a UA sends is
/// this with a new branch ([`RequestBuilder::via_branch`]), indexed with the transaction key
/// found here instead of being checked again.
///
/// ```
/// use sipua_message::{Method, RequestBuilder, Uri, ViaTemplate};
/// let t = ViaTemplate::new("SIP/2.0/UDP 192.0.2.1:5060;branch=", ";rport").unwrap();
/// let uri: Uri = "sip:bob@192.0.2.2".parse().unwrap();
/// let req = RequestBuilder::new(Method::Options, uri.clone())
///     .via_branch(&t, "z9hG4bK1f2e3d")
///     .from("<sip:alice@192.0.2.1>;tag=1".parse().unwrap())
///     .to(sipua_message::NameAddr::new(uri))
///     .call_id("c1")
///     .cseq(1)
///     .build()
///     .unwrap();
/// assert_eq!(req.branch(), Some("z9hG4bK1f2e3d"));
/// assert_eq!(req.via_key().host, "192.0.2.1");
/// ```
#[derive(Debug, Clone)]
pub struct ViaTemplate {
    prefix: String,
    suffix: String,
    /// The transaction key of the value, from its start (the branch set per request).
    key: ViaKeySpans,
}

impl ViaTemplate {
    /// Checks `prefix` + a branch + `suffix` as the top Via of a message is checked (with a
    /// one-character branch: any token in its place is then the branch of the same value,
    /// the rest of the walk unchanged). Fails when that Via does not parse, when its branch
    /// is not the value right after `prefix`, or when `suffix` is neither empty nor starts
    /// with `;`.
    pub fn new(prefix: &str, suffix: &str) -> Result<ViaTemplate> {
        let bad = |r| ParseError::in_header(ErrorKind::HeaderValue, "Via", r);
        if !suffix.is_empty() && !suffix.starts_with(';') {
            return Err(bad("template suffix is not parameters"));
        }
        let text = format!("{prefix}z{suffix}");
        let key = ViaKeySpans::check(text.as_bytes())?;
        let at = prefix.len() as u32;
        if key.branch() != Some((at, at + 1)) {
            return Err(bad("template branch is not after the prefix"));
        }
        Ok(ViaTemplate {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            key,
        })
    }

    /// The value with `branch` in its place.
    pub fn with_branch(&self, branch: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + branch.len() + self.suffix.len());
        s.push_str(&self.prefix);
        s.push_str(branch);
        s.push_str(&self.suffix);
        s
    }
}

/// Writes a CSeq value: the number, a space, the method.
fn write_cseq(out: &mut Vec<u8>, seq: u32, method: &Method) {
    write_decimal(out, u64::from(seq));
    out.push(b' ');
    out.extend_from_slice(method.as_str().as_bytes());
}

impl Request {
    /// The ACK a client INVITE transaction sends for a non-2xx final response
    /// (RFC 3261 §17.1.1.3): same Request-URI, only the top Via, the INVITE's From, Call-ID,
    /// CSeq number and Route set, the response's To (with its tag), no body.
    pub fn ack_for(&self, response: &Response) -> Result<Request> {
        if *self.method() != Method::Invite {
            return Err(ParseError::new(
                ErrorKind::StartLine,
                "only an INVITE is acknowledged",
            ));
        }
        let top_via = self.top_via()?;
        let mut w = Writer::new(self.to_bytes().len() + 64, self.headers().len() + 2);
        w.out.extend_from_slice(b"ACK ");
        w.out.extend_from_slice(self.uri_bytes());
        w.out.extend_from_slice(b" SIP/2.0");
        w.end_start_line();
        w.header_with(&HeaderName::Via, |o| {
            let _ = top_via.write_to(&mut ByteWriter(o));
        });
        w.header(&HeaderName::MaxForwards, b"70");
        for h in self.headers().iter() {
            if h.is(&HeaderName::From) || h.is(&HeaderName::CallId) || h.is(&HeaderName::Route) {
                w.raw(h);
            }
        }
        if let Some(to) = response.headers().get(&HeaderName::To) {
            w.raw(to);
        }
        w.header_with(&HeaderName::CSeq, |o| {
            write_cseq(o, self.cseq().seq, &Method::Ack)
        });
        w.header(&HeaderName::ContentLength, b"0");
        match w.finish(b"")? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::new(ErrorKind::StartLine, "not a request")),
        }
    }

    /// The CANCEL for this request (RFC 3261 §9.1): same Request-URI, top Via (same branch),
    /// From, To, Call-ID, CSeq number and Route set; optional `Reason` lines (RFC 3326).
    pub fn cancel(&self, reasons: &[Header]) -> Result<Request> {
        if matches!(self.method(), Method::Ack | Method::Cancel) {
            return Err(ParseError::new(
                ErrorKind::StartLine,
                "ACK and CANCEL cannot be cancelled",
            ));
        }
        let top_via = self.top_via()?;
        let mut w = Writer::new(self.to_bytes().len() + 64, self.headers().len() + 2);
        w.out.extend_from_slice(b"CANCEL ");
        w.out.extend_from_slice(self.uri_bytes());
        w.out.extend_from_slice(b" SIP/2.0");
        w.end_start_line();
        w.header_with(&HeaderName::Via, |o| {
            let _ = top_via.write_to(&mut ByteWriter(o));
        });
        w.header(&HeaderName::MaxForwards, b"70");
        for h in self.headers().iter() {
            if h.is(&HeaderName::From)
                || h.is(&HeaderName::To)
                || h.is(&HeaderName::CallId)
                || h.is(&HeaderName::Route)
            {
                w.raw(h);
            }
        }
        w.header_with(&HeaderName::CSeq, |o| {
            write_cseq(o, self.cseq().seq, &Method::Cancel)
        });
        for r in reasons {
            w.header(r.name(), r.value());
        }
        w.header(&HeaderName::ContentLength, b"0");
        match w.finish(b"")? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::new(ErrorKind::StartLine, "not a request")),
        }
    }
}

impl Response {
    /// A response to `req` (RFC 3261 §8.2.6): the same Via lines (byte for byte), From, To,
    /// Call-ID and CSeq; the standard reason phrase; `Content-Length: 0`. A 100 Trying also
    /// copies Timestamp (§8.2.6.1). Add a To tag with [`Response::set_to_tag`].
    pub fn from_request(req: &Request, status: u16) -> Response {
        Response::from_request_with(req, status, None, None, &[])
    }

    /// [`Response::from_request`] in one pass with what a UAS usually adds: a To tag (when the
    /// request's To has none), a replacement for the top Via value (with `received`/`rport`,
    /// RFC 3581), and extra headers (Contact, Allow...). One serialisation, one parse.
    pub fn from_request_with(
        req: &Request,
        status: u16,
        to_tag: Option<&str>,
        top_via: Option<&Via>,
        extra: &[Header],
    ) -> Response {
        let via = top_via.map(TopVia::Typed);
        Response::from_request_top_via(req, status, None, to_tag, via, extra, None)
    }

    /// [`Response::from_request_with`] with the replacement top Via value as text (what
    /// [`Via::to_string_with`] writes, made once for every response of a transaction). The
    /// value is checked as the top Via of any message is.
    pub fn from_request_with_via_text(
        req: &Request,
        status: u16,
        to_tag: Option<&str>,
        top_via: Option<&str>,
        extra: &[Header],
    ) -> Response {
        let via = top_via.map(TopVia::Text);
        Response::from_request_top_via(req, status, None, to_tag, via, extra, None)
    }

    /// [`Response::from_request_with_via_text`] with a reason phrase of the caller's (`None`:
    /// the standard one) and a body with its type, still in one pass: a UAS's 183 or 200
    /// with SDP is built once, not built and then rebuilt by [`Response::set_status`] and
    /// `set_body`. A reason with a line break is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn from_request_with_parts(
        req: &Request,
        status: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
        top_via: Option<&str>,
        extra: &[Header],
        body: Option<(&MediaType, &[u8])>,
    ) -> Result<Response> {
        if reason.is_some_and(|r| r.contains(['\r', '\n'])) {
            return Err(ParseError::new(
                ErrorKind::StartLine,
                "reason phrase with a line break",
            ));
        }
        let via = top_via.map(TopVia::Text);
        let mut r = Response::from_request_top_via(req, status, reason, to_tag, via, extra, body);
        // the fallback for lines that did not parse drops what was added: add it again
        if reason.is_some_and(|x| r.reason() != x) {
            r.set_status(status, reason)?;
        }
        if let Some((ct, b)) = body.filter(|(_, b)| r.body().len() != b.len()) {
            r.set_body(Some(ct), b)?;
        }
        Ok(r)
    }

    fn from_request_top_via(
        req: &Request,
        status: u16,
        reason: Option<&str>,
        to_tag: Option<&str>,
        top_via: Option<TopVia<'_>>,
        extra: &[Header],
        body: Option<(&MediaType, &[u8])>,
    ) -> Response {
        let body_len = body.map_or(0, |(_, b)| b.len());
        let status = status.clamp(100, 699);
        let extra_len: usize = extra
            .iter()
            .map(|h| h.name().as_str().len() + h.value().len() + 4)
            .sum();
        let mut w = Writer::new(
            req.to_bytes().len() - req.body().len() + extra_len + body_len + 160,
            req.headers().len() + extra.len() + 2,
        );
        w.out.extend_from_slice(b"SIP/2.0 ");
        write_decimal(&mut w.out, u64::from(status));
        w.out.push(b' ');
        w.out
            .extend_from_slice(reason.unwrap_or(reason_phrase(status)).as_bytes());
        w.end_start_line();
        let mut first_via = true;
        let record_route = creates_dialog(req, status);
        // one match on each line's known name (as HeaderRef::is decides for these names)
        for h in req.headers().iter() {
            match h.entry().known {
                Some(Known::Via) => {
                    match (first_via, top_via) {
                        (true, Some(v)) => {
                            // replace the first value, keep the others of that line
                            w.header_with(&HeaderName::Via, |o| {
                                match v {
                                    TopVia::Typed(v) => {
                                        let _ = v.write_to(&mut ByteWriter(o));
                                    }
                                    TopVia::Text(t) => o.extend_from_slice(t.as_bytes()),
                                }
                                if memchr::memchr(b',', h.value()).is_some() {
                                    for rest in crate::scan::split_commas(h.value()).skip(1) {
                                        o.extend_from_slice(b", ");
                                        o.extend_from_slice(rest);
                                    }
                                }
                            });
                        }
                        _ => w.raw_checked(h, req.checked(h, first_via)),
                    }
                    first_via = false;
                }
                Some(Known::To) => match to_tag.filter(|_| req.to_tag().is_none()) {
                    Some(tag) => {
                        // a tag is a header parameter: it goes at the end of the value
                        w.header_with(&HeaderName::To, |o| {
                            o.extend_from_slice(h.value());
                            o.extend_from_slice(b";tag=");
                            o.extend_from_slice(tag.as_bytes());
                        });
                        // the request's To checked without a tag, so with a token appended
                        // as its last parameter that token is its tag: indexed as such
                        if crate::scan::all_token(tag.as_bytes()) {
                            w.last_tag_is(tag.len());
                        }
                    }
                    None => w.raw_checked(h, req.checked(h, false)),
                },
                Some(Known::From | Known::CallId | Known::CSeq) => {
                    w.raw_checked(h, req.checked(h, false));
                }
                Some(Known::Timestamp) if status == 100 => w.raw(h),
                // byte for byte, in order, unknown parameters and all (RFC 3261 §12.1.1)
                Some(Known::RecordRoute) if record_route => w.raw(h),
                _ => {}
            }
        }
        for h in extra {
            w.header(h.name(), h.value());
        }
        match body {
            None => w.header(&HeaderName::ContentLength, b"0"),
            Some((ct, _)) => {
                w.header_with(&HeaderName::ContentType, |o| {
                    let _ = ct.write_to(&mut ByteWriter(o));
                });
                w.header_with(&HeaderName::ContentLength, |o| {
                    write_decimal(o, body_len as u64)
                });
            }
        }
        match w.finish(body.map_or(&[][..], |(_, b)| b)) {
            Ok(Message::Response(r)) => r,
            // the lines come from a request that parsed; a tag or Via of the caller's that does
            // not parse falls back to the plain copy
            _ if to_tag.is_some() || top_via.is_some() || !extra.is_empty() => {
                Response::from_request(req, status)
            }
            _ => fallback_response(),
        }
    }
}

/// Whether a `status` response to `req` creates a dialog, and so carries the request's
/// Record-Route (RFC 3261 §12.1.1): a 101–299 to an INVITE, or a 2xx to a SUBSCRIBE, REFER
/// (RFC 6665 §4.2.1, RFC 3515) or to a NOTIFY that makes a subscription's dialog (RFC 6665
/// §4.1.2.4), when the request is outside a dialog (no To tag).
fn creates_dialog(req: &Request, status: u16) -> bool {
    if req.has_to_tag() {
        return false;
    }
    match req.method() {
        Method::Invite => (101..300).contains(&status),
        Method::Subscribe | Method::Refer | Method::Notify => (200..300).contains(&status),
        _ => false,
    }
}

/// A response's replacement top Via value, typed or as text.
#[derive(Clone, Copy)]
enum TopVia<'a> {
    Typed(&'a Via),
    Text(&'a str),
}

fn fallback_response() -> Response {
    let raw =
        b"SIP/2.0 500 Server Internal Error\r\nVia: SIP/2.0/UDP invalid;branch=z9hG4bKinvalid\r\n\
        From: <sip:invalid>\r\nTo: <sip:invalid>\r\nCall-ID: invalid\r\nCSeq: 1 INVALID\r\n\
        Content-Length: 0\r\n\r\n";
    match Message::parse(raw) {
        Ok(Message::Response(r)) => r,
        _ => unreachable!("a fixed, valid response"),
    }
}

/// A best-effort response to a request that did not parse (RFC 3261 §8.2: 400 with the reason,
/// 505 for a bad version, 413 when too large), so a UAS can still tell the sender what is wrong.
///
/// The response copies the request's Via, From, To, Call-ID and CSeq lines as they are, adds
/// `to_tag` to To, and uses [`ParseError::status_code`] and the error's text as the reason
/// phrase. Returns `None` when the input is a response (malformed responses are dropped),
/// when one of those five headers cannot be found, or when they would make the answer larger
/// than [`MAX_ERROR_RESPONSE`] (Vias past the top one are left out first): a peer's oversized
/// request is never sent back.
///
/// ```
/// let bad = b"OPTIONS sip:a@example.com SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
///     From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
/// let err = sipua_message::Message::parse(bad).unwrap_err();
/// let resp = sipua_message::error_response(bad, &err, "t1").unwrap();
/// assert!(resp.starts_with(b"SIP/2.0 505 SIP version not supported\r\n"));
/// ```
pub fn error_response(request: &[u8], err: &ParseError, to_tag: &str) -> Option<Bytes> {
    let begin = request.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let data = &request[begin..];
    if data.len() >= 4 && data[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let mut out = format!("SIP/2.0 {} {err}\r\n", err.status_code()).into_bytes();
    let mut seen = [false; 5];
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip(1)
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        // join folded continuation lines
        let mut full = line.to_vec();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                full.extend_from_slice(b"\r\n");
                full.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        let Some(colon) = full.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(crate::scan::trim(&full[..colon]));
        let slot = match name {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            _ => continue,
        };
        if slot != 0 && seen[slot] {
            continue; // one of each, the first
        }
        // what a peer made large is not sent back large (a 413 for 1 500 Vias): Vias beyond
        // the top one only while the answer stays within its budget (the top one reaches
        // the hop that sent it, which is all an answer to a broken request can hope for)
        if slot == 0 && seen[0] && out.len() + full.len() > MAX_ERROR_RESPONSE / 2 {
            continue;
        }
        seen[slot] = true;
        out.extend_from_slice(&full);
        if slot == 2
            && !full.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="))
            && !to_tag.is_empty()
        {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(to_tag.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if seen.contains(&false) || out.len() > MAX_ERROR_RESPONSE {
        // a From, To or Call-ID too large to echo: no answer rather than a large one
        return None;
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

/// The largest answer [`error_response`] writes: the echoed Vias, From, To, Call-ID and
/// CSeq of a request that may be hostile.
pub const MAX_ERROR_RESPONSE: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_given_as_written_build_the_request_their_parsed_forms_build() {
        for (uri, from, to, tag) in [
            (
                "sip:bob@192.0.2.2",
                "<sip:a@192.0.2.1>;tag=1",
                "<sip:bob@192.0.2.2>",
                "x",
            ),
            (
                "sips:bob@[2001:db8::1]:5061;transport=tcp;maddr=h?Subject=a%20b",
                "\"A \\\"q\\\"\" <sip:a@h;lr>;tag=9;x=\"y z\"",
                "Bob <tel:+1-201-555-0123;phone-context=x>;y",
                "a.b-c!",
            ),
            ("urn:service:sos", "<sip:%61@h>;tag=t", "<sip:b@h>", "z9"),
        ] {
            let u: Uri = uri.parse().unwrap();
            let f: NameAddr = from.parse().unwrap();
            let t: NameAddr = to.parse().unwrap();
            let via = "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1";
            let parsed = RequestBuilder::new_ref(Method::Bye, &u)
                .via_text(via)
                .from_ref(&f)
                .to_tagged(&t, tag)
                .call_id("c")
                .cseq(2)
                .build()
                .unwrap();
            let written = RequestBuilder::new_text(Method::Bye, &u.to_string())
                .via_text(via)
                .from_text(&f.to_string())
                .to_text_tagged(&t.to_string(), tag)
                .call_id("c")
                .cseq(2)
                .build()
                .unwrap();
            assert_eq!(parsed.to_bytes(), written.to_bytes(), "{uri}");
        }
    }

    #[test]
    fn via_templates_are_checked_once_and_index_as_a_parse_would() {
        for (prefix, suffix) in [
            ("SIP/2.0/UDP 192.0.2.1:5060;branch=", ";rport"),
            ("SIP/2.0/TCP h.example.com;x=1;branch=", ""),
            (
                "SIP / 2.0 / TLS [2001:db8::1]:5061 ; branch=",
                ";  rport ;y=\"q\"",
            ),
        ] {
            let t = ViaTemplate::new(prefix, suffix).unwrap();
            let uri: Uri = "sip:bob@192.0.2.2".parse().unwrap();
            for branch in ["z9hG4bK1", "z9hG4bK0123456789abcdef", "x", "!%*_+`'~.-"] {
                let req = RequestBuilder::new(Method::Options, uri.clone())
                    .via_branch(&t, branch)
                    .from("<sip:a@192.0.2.1>;tag=1".parse().unwrap())
                    .to(NameAddr::new(uri.clone()))
                    .call_id("c")
                    .cseq(1)
                    .build()
                    .unwrap();
                let parsed = Message::parse(&req.to_bytes()).unwrap();
                assert_eq!(req.via_key(), parsed.via_key(), "{prefix} {branch}");
                assert_eq!(req.branch(), Some(branch));
            }
        }
        for (prefix, suffix) in [
            ("SIP/2.0/UDP h;branch=", "rport"),
            ("SIP/2.0/UDP h;branch=x;branch=", ""),
            ("SIP/2.0/UDP h;branch=\"", ""),
            ("SIP/2.0/UDP h;", ""),
            ("SIP/2.0/UDP h;branch=", ";;"),
            ("SIP/2.0/UDP h;branch=", ", SIP/2.0/UDP g"),
            ("SIP/2.0/UDP;branch=", ""),
        ] {
            assert!(
                ViaTemplate::new(prefix, suffix).is_err(),
                "{prefix} {suffix}"
            );
        }
    }
}
