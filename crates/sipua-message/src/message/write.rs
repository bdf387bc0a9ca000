//! Writing messages (RFC 3261 §7): one buffer per message, each header line indexed as it is
//! written so that a built message is not scanned again, with the same verdicts the parser
//! would give on the same bytes (see [`Writer`]).

use std::fmt;

use bytes::BufMut;

use super::*;

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
