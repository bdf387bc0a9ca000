//! Parse errors (RFC 3261 §8.2, §16.3, §21.4.1, RFC 4475).
//!
//! Every error says what is wrong in a short phrase that a UAS can send back verbatim as the
//! reason phrase of a `400 Bad Request`, and carries the name of the offending header where
//! there is one. [`ParseError::status_code`] tells which response fits (400, 505, ...).

use std::fmt;

/// What kind of problem a [`ParseError`] reports; decides the response a UAS sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The start line is not a request line or a status line.
    StartLine,
    /// The SIP version is not `SIP/2.0` (answer 505, RFC 3261 §21.5.6).
    Version,
    /// The status code is out of range (responses: drop them).
    StatusCode,
    /// A header line is not `name: value`.
    HeaderLine,
    /// A header value does not match its grammar.
    HeaderValue,
    /// A header that a request or response must carry is missing (RFC 3261 §8.1.1).
    MissingHeader,
    /// A header that allows a single value appears more than once.
    DuplicateHeader,
    /// The CSeq method does not match the request method (RFC 3261 §8.1.1.5).
    CSeqMismatch,
    /// Content-Length is invalid, duplicated, or larger than the available body.
    ContentLength,
    /// A URI does not match the sip/sips/tel/absoluteURI grammar.
    Uri,
    /// The message, or one of its header lines, is larger than the receiver's limit, or it
    /// has too many headers or Vias (answer 513 Message Too Large, RFC 3261 §21.5.14).
    TooLarge,
    /// The body is larger than the receiver takes (answer 413, RFC 3261 §21.4.11).
    BodyTooLarge,
    /// The Request-URI is longer than the receiver takes (answer 414, RFC 3261 §21.4.12).
    UriTooLong,
    /// The header section is not terminated by an empty line.
    Incomplete,
}

/// Why a message, header or URI could not be parsed.
///
/// `Display` gives a phrase such as `invalid Via header: empty parameter` that fits as the
/// reason phrase of a 400 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    header: Option<&'static str>,
    reason: &'static str,
}

impl ParseError {
    pub(crate) const fn new(kind: ErrorKind, reason: &'static str) -> Self {
        ParseError {
            kind,
            header: None,
            reason,
        }
    }

    pub(crate) const fn in_header(
        kind: ErrorKind,
        header: &'static str,
        reason: &'static str,
    ) -> Self {
        ParseError {
            kind,
            header: Some(header),
            reason,
        }
    }

    /// Attaches the header name to an error raised by a value parser that did not know it.
    pub(crate) fn with_header(mut self, header: &'static str) -> Self {
        if self.header.is_none() {
            self.header = Some(header);
        }
        self
    }

    /// The error for a message larger than the receiver's limit (answer 513 or drop).
    pub fn too_large() -> Self {
        ParseError::new(ErrorKind::TooLarge, "message too large")
    }

    /// The error for a message of `data.len()` bytes when the receiver takes at most `limit`:
    /// 413 (the body is too large) when the header section ends within the limit, 513 (the
    /// message is too large) when it does not.
    pub fn too_large_for(data: &[u8], limit: usize) -> Self {
        let head = &data[..data.len().min(limit)];
        if memchr::memmem::find(head, b"\r\n\r\n").is_some() {
            ParseError::new(ErrorKind::BodyTooLarge, "body too large")
        } else {
            ParseError::too_large()
        }
    }

    /// Puts the error under `header`, keeping its reason (the name of an inner header, if
    /// any, is replaced).
    pub(crate) fn with_header_name(mut self, header: &'static str) -> Self {
        self.header = Some(header);
        if self.kind == ErrorKind::Uri {
            self.kind = ErrorKind::HeaderValue;
        }
        self
    }

    /// The kind of problem.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The canonical name of the offending header, if the problem is in one.
    pub fn header(&self) -> Option<&'static str> {
        self.header
    }

    /// The short reason, without the header name.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The status code a UAS should answer a request that fails this way with
    /// (400; 505 for a bad version; 513, 413 or 414 for a message, body or Request-URI too
    /// large, RFC 3261 §21.4).
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ErrorKind::Version => 505,
            ErrorKind::TooLarge => 513,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.header) {
            (ErrorKind::MissingHeader, Some(h)) => write!(f, "missing {h} header"),
            (ErrorKind::DuplicateHeader, Some(h)) => write!(f, "more than one {h} header"),
            (_, Some(h)) => write!(f, "invalid {h} header: {}", self.reason),
            (_, None) => f.write_str(self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Shorthand for results of this crate.
pub type Result<T, E = ParseError> = std::result::Result<T, E>;
