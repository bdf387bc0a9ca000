//! Header fields and the ordered header list of a message (RFC 3261 §7.3).
//!
//! A parsed header keeps its exact line, so a message that is modified elsewhere still writes
//! untouched and unknown headers byte for byte. A header built in code is written in the
//! canonical `Name: value` form.

mod name;
mod typed;
mod via;

pub use name::HeaderName;
pub(crate) use name::Known;
pub use typed::*;
pub(crate) use via::ViaAt;
pub(crate) use via::ViaParts;
pub use via::{Transport, Via, ViaText, BRANCH_COOKIE};

use bytes::Bytes;

use crate::error::Result;
use crate::scan;

/// A byte range inside a message buffer.
pub(crate) type Span = (u32, u32);

pub(crate) fn span(s: Span) -> std::ops::Range<usize> {
    s.0 as usize..s.1 as usize
}

/// A header to add to a message: a name and a value, written as `Name: value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: Bytes,
}

impl Header {
    /// A header with the given value.
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Header {
        Header {
            name,
            value: value.into(),
        }
    }

    /// A header holding a typed value.
    pub fn typed<T: TypedHeader>(value: &T) -> Header {
        Header::new(T::NAME, value.to_string())
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// Where one header line of a parsed message sits in its buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The known name, or `None` for an extension header (its name is `name` in the line).
    pub known: Option<Known>,
    /// The whole line, folds included, without the final CRLF.
    pub line: Span,
    /// The name as written.
    pub name: Span,
    /// The trimmed value.
    pub value: Span,
}

impl Entry {
    pub(crate) fn is(&self, buf: &[u8], name: &HeaderName) -> bool {
        match (self.known, name) {
            (Some(k), n) => Some(k) == n.to_known(),
            (None, HeaderName::Other(o)) => buf[span(self.name)].eq_ignore_ascii_case(o.as_bytes()),
            (None, _) => false,
        }
    }
}

/// One header line of a message, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    buf: &'a [u8],
    entry: &'a Entry,
}

impl<'a> HeaderRef<'a> {
    /// The header of `entry` in `buf`.
    pub(crate) fn new(buf: &'a [u8], entry: &'a Entry) -> HeaderRef<'a> {
        HeaderRef { buf, entry }
    }

    /// Its index entry (ranges into the message's buffer).
    pub(crate) fn entry(&self) -> &'a Entry {
        self.entry
    }

    /// The header's name (known names map compact forms to the full name).
    pub fn name(&self) -> HeaderName {
        match self.entry.known {
            Some(k) => k.name(),
            None => HeaderName::Other(scan::string(self.name_bytes())),
        }
    }

    /// The name as written on the wire.
    pub fn name_bytes(&self) -> &'a [u8] {
        &self.buf[span(self.entry.name)]
    }

    /// Whether this header is `name`.
    pub fn is(&self, name: &HeaderName) -> bool {
        self.entry.is(self.buf, name)
    }

    /// The value as bytes: trimmed, folds (CRLF + whitespace) still inside.
    pub fn value(&self) -> &'a [u8] {
        &self.buf[span(self.entry.value)]
    }

    /// The value as text, if it is valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value()).ok()
    }

    /// The whole line as received (name, colon, value, folds), without the final CRLF.
    pub fn raw_line(&self) -> &'a [u8] {
        &self.buf[span(self.entry.line)]
    }

    /// The value with folds replaced by single spaces (RFC 3261 §7.3.1), lossy UTF-8.
    pub fn unfolded(&self) -> String {
        let v = self.value();
        let mut out = String::with_capacity(v.len());
        let mut i = 0;
        while i < v.len() {
            if v[i] == b'\r' || v[i] == b'\n' {
                while out.ends_with([' ', '\t']) {
                    out.pop();
                }
                while i < v.len() && scan::is_ws(v[i]) {
                    i += 1;
                }
                out.push(' ');
                continue;
            }
            let start = i;
            while i < v.len() && v[i] != b'\r' && v[i] != b'\n' {
                i += 1;
            }
            out.push_str(&String::from_utf8_lossy(&v[start..i]));
        }
        out
    }

    /// Parses the whole value as one `T`.
    pub fn parse<T: TypedHeader>(&self) -> Result<T> {
        T::parse(self.value())
    }

    /// The comma-separated elements of a list header's value (the whole value otherwise).
    pub fn elements(&self) -> Vec<&'a [u8]> {
        let is_list = self.entry.known.is_some_and(|k| k.name().is_list());
        if is_list {
            scan::split_commas(self.value()).collect()
        } else {
            vec![self.value()]
        }
    }
}

/// The ordered header lines of a message, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    buf: &'a [u8],
    entries: &'a [Entry],
}

impl<'a> Headers<'a> {
    pub(crate) fn new(buf: &'a [u8], entries: &'a [Entry]) -> Headers<'a> {
        Headers { buf, entries }
    }

    /// The first header named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderRef<'a>> {
        self.iter().find(|h| h.is(name))
    }

    /// Every header named `name`, in order.
    pub fn get_all(&self, name: &'a HeaderName) -> impl Iterator<Item = HeaderRef<'a>> + 'a {
        self.iter().filter(move |h| h.is(name))
    }

    /// Whether a header named `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The first value of `T`: `None` if absent, `Some(Err)` if malformed.
    pub fn typed<T: TypedHeader>(&self) -> Option<Result<T>> {
        let h = self.get(&T::NAME)?;
        Some(if T::LIST {
            T::parse(scan::split_commas(h.value()).next().unwrap_or_default())
        } else {
            T::parse(h.value())
        })
    }

    /// Every value of `T`, across header lines and comma-separated elements.
    pub fn typed_all<T: TypedHeader>(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for h in self.iter().filter(|h| h.is(&T::NAME)) {
            if T::LIST {
                for e in scan::split_commas(h.value()) {
                    out.push(T::parse(e)?);
                }
            } else {
                out.push(h.parse()?);
            }
        }
        Ok(out)
    }

    /// Iterates over all header lines in order.
    pub fn iter(&self) -> impl Iterator<Item = HeaderRef<'a>> + 'a {
        let buf = self.buf;
        self.entries
            .iter()
            .map(move |entry| HeaderRef { buf, entry })
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
