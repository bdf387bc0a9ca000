//! Cutting SIP messages out of a byte stream (TCP, TLS; RFC 3261 §18.3) and recognising the
//! CRLF keep-alives of RFC 5626 §4.4.1 (a double CRLF "ping", a single CRLF "pong").
//!
//! The framer finds the end of the header section, reads Content-Length (a missing one counts
//! as 0 on a stream), and waits until the whole body is there. It never holds more than the
//! configured maximum message size plus the last chunk pushed: a peer that sends a larger
//! message, or a broken Content-Length, gets an error and the connection should be closed,
//! because framing is lost.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::scan;

/// What the framer cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (header section and body), ready for [`crate::Message::parse_bytes`].
    Message(Bytes),
    /// A double CRLF keep-alive: answer with a single CRLF (RFC 5626 §4.4.1).
    Ping,
    /// A single CRLF: the answer to our ping.
    Pong,
}

/// Why the stream cannot be framed any more (close the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramerError {
    /// A message is larger than the limit.
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Content-Length is missing a value, not a number, or given twice with different values.
    BadContentLength,
}

impl fmt::Display for FramerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramerError::TooLarge { limit } => write!(f, "message larger than {limit} bytes"),
            FramerError::BadContentLength => f.write_str("invalid Content-Length on a stream"),
        }
    }
}

impl std::error::Error for FramerError {}

/// Accumulates stream bytes and yields whole messages and keep-alives.
///
/// ```
/// use sipua_message::{StreamFramer, Frame};
/// let mut f = StreamFramer::new(65_535);
/// f.push(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nhi");
/// assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
/// assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(m)) if m.ends_with(b"hi")));
/// assert_eq!(f.next_frame().unwrap(), None);
/// ```
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_size: usize,
    /// How far the search for the end of the header section has already looked.
    scanned: usize,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max_size` bytes.
    pub fn new(max_size: usize) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::new(),
            max_size,
            scanned: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not form a complete frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error if the
    /// stream can no longer be framed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramerError> {
        if self.buf.starts_with(b"\r\n") {
            self.scanned = 0;
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            self.buf.advance(2);
            return Ok(Some(Frame::Pong));
        }
        if self.buf.first() == Some(&b'\n') {
            // a bare LF keep-alive from a sloppy peer
            self.buf.advance(1);
            self.scanned = 0;
            return Ok(Some(Frame::Pong));
        }
        let from = self.scanned.saturating_sub(3);
        let Some(i) = memchr::memmem::find(&self.buf[from..], b"\r\n\r\n").map(|i| i + from) else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_size {
                return Err(FramerError::TooLarge {
                    limit: self.max_size,
                });
            }
            return Ok(None);
        };
        let head_len = i + 4;
        let cl = content_length(&self.buf[..i])?;
        let total = head_len
            .checked_add(cl)
            .ok_or(FramerError::BadContentLength)?;
        if total > self.max_size {
            return Err(FramerError::TooLarge {
                limit: self.max_size,
            });
        }
        if self.buf.len() < total {
            self.scanned = i; // keep the header end found; next call finds it again at once
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

impl StreamFramer {
    /// The answer to send before closing after `error`, when one can be made: 413 or 513 for
    /// a message too large (RFC 3261 §21.4.11, §21.5.14), built from the part received by
    /// [`crate::error_response`] (so nothing large is echoed); `None` for broken framing.
    pub fn error_answer(&self, error: &FramerError) -> Option<Bytes> {
        let FramerError::TooLarge { limit } = error else {
            return None;
        };
        let first = self.buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let data = &self.buf[first..];
        crate::error_response(data, &crate::ParseError::too_large_for(data, *limit), "")
    }
}

/// Content-Length from a header section (0 when absent).
fn content_length(head: &[u8]) -> Result<usize, FramerError> {
    let mut found: Option<u32> = None;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = scan::trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = scan::parse_u32(scan::trim(&line[colon + 1..]))
                .ok_or(FramerError::BadContentLength)?;
            if found.is_some_and(|f| f != v) {
                return Err(FramerError::BadContentLength);
            }
            found = Some(v);
        }
    }
    Ok(found.unwrap_or(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn a_message_too_large_is_answered_413_or_513_before_the_close() {
        let head = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
                    From: <sip:b@c>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n";
        // the header section fits but the body does not: 413
        let mut f = StreamFramer::new(300);
        f.push(format!("{head}Content-Length: 5000\r\n\r\n").as_bytes());
        let e = f.next_frame().unwrap_err();
        let answer = f.error_answer(&e).unwrap();
        assert!(
            answer.starts_with(b"SIP/2.0 413 body too large\r\n"),
            "{answer:?}"
        );
        // the header section alone is over the limit: 513
        let mut f = StreamFramer::new(300);
        f.push(format!("{head}X-Big: {}\r\n", "a".repeat(400)).as_bytes());
        let e = f.next_frame().unwrap_err();
        let answer = f.error_answer(&e).unwrap();
        assert!(
            answer.starts_with(b"SIP/2.0 513 message too large\r\n"),
            "{answer:?}"
        );
        assert!(
            !answer.windows(10).any(|w| w == b"aaaaaaaaaa"),
            "nothing large echoed"
        );
        // broken framing gets no answer
        let mut f = StreamFramer::new(300);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n");
        let e = f.next_frame().unwrap_err();
        assert_eq!(f.error_answer(&e), None);
    }

    #[test]
    fn byte_by_byte_input_gives_one_message() {
        let mut f = StreamFramer::new(1000);
        let mut frames = Vec::new();
        for b in MSG.iter().chain(MSG) {
            f.push(&[*b]);
            while let Some(fr) = f.next_frame().unwrap() {
                frames.push(fr);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Message(Bytes::from_static(MSG)),
                Frame::Message(Bytes::from_static(MSG))
            ]
        );
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn oversize_and_broken_length_are_errors() {
        let mut f = StreamFramer::new(30);
        f.push(MSG);
        assert_eq!(f.next_frame(), Err(FramerError::TooLarge { limit: 30 }));
        let mut f = StreamFramer::new(20);
        f.push(&[b'a'; 30]);
        assert_eq!(f.next_frame(), Err(FramerError::TooLarge { limit: 20 }));
        let mut f = StreamFramer::new(1000);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramerError::BadContentLength));
    }

    #[test]
    fn keepalives() {
        let mut f = StreamFramer::new(1000);
        f.push(b"\r\n\r\n\r\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Pong));
        assert_eq!(f.next_frame().unwrap(), None);
    }
}
