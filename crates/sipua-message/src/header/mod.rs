//! Header fields and the ordered header list of a message (RFC 3261 §7.3).
//!
//! A parsed header keeps its exact line, so a message that is modified elsewhere still writes
//! untouched and unknown headers byte for byte. A header built in code is written in the
//! canonical `Name: value` form.

mod name;
mod typed;
mod via;

pub use name::HeaderName;
pub use typed::*;
pub use via::{Transport, Via, BRANCH_COOKIE};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Result;
use crate::scan;

/// One header field: a name and a value, plus the original line if it was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    /// The whole original line (folds included, no final CRLF) if `raw`, else the value.
    bytes: Bytes,
    value_start: u32,
    value_end: u32,
    raw: bool,
}

impl Header {
    /// A header with the given value, written canonically.
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Header {
        let bytes = value.into();
        let end = bytes.len() as u32;
        Header { name, bytes, value_start: 0, value_end: end, raw: false }
    }

    /// A header holding a typed value.
    pub fn typed<T: TypedHeader>(value: &T) -> Header {
        Header::new(T::NAME, value.to_string())
    }

    /// A parsed header line; `value` is the range of the trimmed value inside `line`.
    pub(crate) fn from_line(name: HeaderName, line: Bytes, value: std::ops::Range<usize>) -> Header {
        Header { name, bytes: line, value_start: value.start as u32, value_end: value.end as u32, raw: true }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value as bytes: trimmed, folds (CRLF + whitespace) still inside.
    pub fn value(&self) -> &[u8] {
        &self.bytes[self.value_start as usize..self.value_end as usize]
    }

    /// The value as text, if it is valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value()).ok()
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

    /// The original line, if this header was parsed and not rebuilt.
    pub fn raw_line(&self) -> Option<&[u8]> {
        self.raw.then_some(&self.bytes[..])
    }

    /// Parses the value as `T` (for list headers, the whole value must be one element).
    pub fn parse<T: TypedHeader>(&self) -> Result<T> {
        T::parse(self.value())
    }

    /// The comma-separated elements of the value (just the value for non-list headers).
    pub fn elements(&self) -> impl Iterator<Item = &[u8]> {
        let list = self.name.is_list();
        let v = self.value();
        let mut single = Some(v);
        let mut split = list.then(|| scan::split_commas(v));
        std::iter::from_fn(move || match &mut split {
            Some(s) => s.next(),
            None => single.take(),
        })
    }

    /// Appends the header line and its CRLF to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        if self.raw {
            out.put_slice(&self.bytes);
        } else {
            out.put_slice(self.name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(&self.bytes);
        }
        out.put_slice(b"\r\n");
    }

    /// Number of bytes [`Header::write_to`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        if self.raw {
            self.bytes.len() + 2
        } else {
            self.name.as_str().len() + 4 + self.bytes.len()
        }
    }
}

/// The ordered header fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub(crate) Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// The first header named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&Header> {
        self.0.iter().find(|h| &h.name == name)
    }

    /// Every header named `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Header> + 'a {
        self.0.iter().filter(move |h| &h.name == name)
    }

    /// Whether a header named `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The first value of `T`: `None` if absent, `Some(Err)` if malformed.
    pub fn typed<T: TypedHeader>(&self) -> Option<Result<T>> {
        let h = self.get(&T::NAME)?;
        Some(match h.elements().next() {
            Some(first) => T::parse(first),
            None => T::parse(h.value()),
        })
    }

    /// Every value of `T`, across header lines and comma-separated elements.
    pub fn typed_all<T: TypedHeader>(&self) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for h in self.get_all(&T::NAME) {
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

    /// Iterates over all headers in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, h: Header) {
        self.0.push(h);
    }

    pub(crate) fn insert(&mut self, index: usize, h: Header) {
        let index = index.min(self.0.len());
        self.0.insert(index, h);
    }

    /// Replaces every `name` header with `h`, at the position of the first one (or at the end).
    pub(crate) fn set(&mut self, h: Header) {
        match self.0.iter().position(|x| x.name == h.name) {
            Some(i) => {
                let name = h.name.clone();
                self.0[i] = h;
                let mut j = 0;
                self.0.retain(|x| {
                    let keep = j <= i || x.name != name;
                    j += 1;
                    keep
                });
            }
            None => self.0.push(h),
        }
    }

    /// Removes every `name` header; returns how many were removed.
    pub(crate) fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.0.len();
        self.0.retain(|h| &h.name != name);
        before - self.0.len()
    }

    /// Removes the first value of a list header (the top Via, say), dropping the line if
    /// it held only that value.
    pub(crate) fn remove_first_value(&mut self, name: &HeaderName) -> bool {
        let Some(i) = self.0.iter().position(|h| &h.name == name) else { return false };
        let mut parts = scan::split_commas(self.0[i].value());
        parts.next();
        let rest: Vec<&[u8]> = parts.collect();
        if rest.is_empty() {
            self.0.remove(i);
        } else {
            let joined = rest.join(&b", "[..]);
            self.0[i] = Header::new(name.clone(), joined);
        }
        true
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.0.iter().map(Header::encoded_len).sum()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
