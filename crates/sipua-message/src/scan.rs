//! Lexical pieces of the SIP grammar (RFC 3261 §25.1): token and word characters, linear
//! whitespace (including folded lines), quoted strings with quoted-pairs, and comma-separated
//! lists that respect quotes and angle brackets.
//!
//! Everything works on bytes: SIP is mostly ASCII, and working on bytes means malformed UTF-8
//! can never cause a panic or a lossy rewrite of data we only forward.

use crate::error::{ErrorKind, ParseError, Result};

/// A byte class: ASCII letters and digits plus `extra`.
pub(crate) const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

pub(crate) static TOKEN: [bool; 256] = table(b"-.!%*_+`'~");
static WORD: [bool; 256] = table(b"-.!%*_+`'~()<>:\\\"/[]?{}");

/// `token` characters (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// `word` characters, used by Call-ID (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    WORD[b as usize]
}

/// Whitespace inside a header value. CR and LF can only be there as part of a fold, which the
/// header splitter guarantees, so they count as whitespace too.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Strips leading and trailing whitespace (including folds).
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// True when the whole slice is a non-empty token.
pub(crate) fn all_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Bytes to an owned string; invalid UTF-8 becomes U+FFFD (typed views only: raw bytes are
/// kept elsewhere for forwarding).
pub(crate) fn string(s: &[u8]) -> String {
    // the check alone is cheaper than the lossy walk, and almost every input passes it
    match std::str::from_utf8(s) {
        Ok(t) => t.to_owned(),
        Err(_) => String::from_utf8_lossy(s).into_owned(),
    }
}

/// A cursor over a header value.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    pub s: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Cursor { s, pos: 0 }
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    #[inline]
    pub fn skip_ws(&mut self) {
        // fast path: most separators have no whitespace around them
        if self.s.get(self.pos).is_some_and(|&b| !is_ws(b)) {
            return;
        }
        self.take_while(is_ws);
    }

    /// Consumes `b` if it is next (no whitespace skipped).
    #[inline]
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips whitespace, then consumes `b` if it is next; on failure whitespace stays skipped.
    #[inline]
    pub fn eat_sep(&mut self, b: u8) -> bool {
        self.skip_ws();
        self.eat(b)
    }

    /// True when only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.s.len()
    }

    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or_default()
    }

    /// Consumes bytes while `f` holds; returns them (possibly empty).
    #[inline]
    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&b| !f(b)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// A non-empty token, or `None` (nothing consumed).
    #[inline]
    pub fn token(&mut self) -> Option<&'a [u8]> {
        let t = self.take_while(is_token);
        if t.is_empty() {
            None
        } else {
            Some(t)
        }
    }

    /// A quoted string starting at the cursor (which must be at `"`); returns the raw bytes
    /// between the quotes, quoted-pairs still escaped.
    pub fn quoted(&mut self) -> Result<&'a [u8]> {
        if !self.eat(b'"') {
            return Err(ParseError::new(
                ErrorKind::HeaderValue,
                "expected a quoted string",
            ));
        }
        let start = self.pos;
        while self.pos < self.s.len() {
            match self.s[self.pos] {
                b'"' => {
                    let inner = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(inner);
                }
                b'\\' => {
                    // quoted-pair: "\" followed by any octet except CR and LF
                    match self.s.get(self.pos + 1) {
                        Some(b'\r') | Some(b'\n') | None => {
                            return Err(ParseError::new(
                                ErrorKind::HeaderValue,
                                "bad escape in quoted string",
                            ))
                        }
                        Some(_) => self.pos += 2,
                    }
                }
                _ => self.pos += 1,
            }
        }
        Err(ParseError::new(
            ErrorKind::HeaderValue,
            "unterminated quoted string",
        ))
    }
}

/// Position of the first `needle` in `hay`, eight bytes at a time (SWAR): faster than a
/// byte loop on header lines, and without the set-up cost of a vector search on short input.
#[inline]
pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        if let Some(i) = in_word(chunk, needle) {
            return Some(base + i);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

/// [`find_byte`] for longer runs such as a line: sixteen bytes at a time, in a form the
/// compiler turns into one vector comparison per chunk.
#[inline(never)]
pub(crate) fn find_byte_wide(hay: &[u8], needle: u8) -> Option<usize> {
    find_byte_wide_inline(hay, needle)
}

/// [`find_byte_wide`], inlined.
#[inline(always)]
pub(crate) fn find_byte_wide_inline(hay: &[u8], needle: u8) -> Option<usize> {
    let mut chunks = hay.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut any = false;
        for &b in chunk {
            any |= b == needle;
        }
        if any {
            let (lo, hi) = chunk.split_at(8);
            return Some(
                base + in_word(lo, needle).or_else(|| in_word(hi, needle).map(|i| i + 8))?,
            );
        }
        base += 16;
    }
    find_byte(chunks.remainder(), needle).map(|i| base + i)
}

/// The first `needle` in eight bytes.
#[inline]
fn in_word(chunk: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let word = u64::from_le_bytes(chunk.try_into().ok()?);
    let x = word ^ LO.wrapping_mul(u64::from(needle));
    let found = x.wrapping_sub(LO) & !x & HI;
    (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
}

/// Case-insensitive equality of two tokens (`|0x20` folds case exactly on token characters).
#[inline]
pub(crate) fn eq_token_ci(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x | 0x20 == y | 0x20)
}

/// Removes quoted-pair escapes from the inside of a quoted string.
pub(crate) fn unescape_quoted(inner: &[u8]) -> String {
    if !inner.contains(&b'\\') {
        return string(inner);
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            out.push(inner[i + 1]);
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Splits a header value at top-level commas: commas inside quoted strings or `<...>` do not
/// count. Elements are trimmed; empty elements are returned too (callers reject them).
pub(crate) fn split_commas(s: &[u8]) -> SplitCommas<'_> {
    SplitCommas {
        s,
        pos: 0,
        done: false,
    }
}

pub(crate) struct SplitCommas<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Iterator for SplitCommas<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let start = self.pos;
        if start == 0 && memchr::memchr2(b',', b'"', self.s).is_none() {
            // the common case: a single value
            self.done = true;
            return Some(trim(self.s));
        }
        let mut i = self.pos;
        let mut in_quote = false;
        let mut in_angle = false;
        while i < self.s.len() {
            let b = self.s[i];
            if in_quote {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_quote = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_quote = true,
                    b'<' => in_angle = true,
                    b'>' => in_angle = false,
                    b',' if !in_angle => {
                        self.pos = i + 1;
                        return Some(trim(&self.s[start..i]));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.done = true;
        Some(trim(&self.s[start..]))
    }
}

/// Parses a decimal number without sign (leading zeros allowed); `None` on overflow, on an
/// empty string or on a non-digit.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let zeros = s.iter().take_while(|&&b| b == b'0').count();
    let digits = &s[zeros..];
    if digits.len() > 10 {
        return None;
    }
    let v = digits
        .iter()
        .fold(0u64, |v, &b| v * 10 + u64::from(b - b'0'));
    u32::try_from(v).ok()
}

/// `00` to `99`, two characters each, for writing numbers without the formatter.
const DIGIT_PAIRS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// Writes `n` in decimal into any [`std::fmt::Write`], two digits at a time from a table
/// (no formatter, no UTF-8 check of a digit buffer): ports and IPv4 octets.
pub(crate) fn write_decimal<W: std::fmt::Write>(f: &mut W, n: u32) -> std::fmt::Result {
    if n >= 100 {
        write_decimal(f, n / 100)?;
        let i = (n % 100) as usize * 2;
        f.write_str(&DIGIT_PAIRS[i..i + 2])
    } else if n >= 10 {
        let i = n as usize * 2;
        f.write_str(&DIGIT_PAIRS[i..i + 2])
    } else {
        // the second digit of "0n"
        let i = n as usize * 2 + 1;
        f.write_str(&DIGIT_PAIRS[i..i + 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_respect_quotes_and_angles() {
        let v: Vec<_> = split_commas(br#""a, b" <sip:x,y@h>;p="1,2", <sip:z>"#).collect();
        assert_eq!(
            v,
            vec![&br#""a, b" <sip:x,y@h>;p="1,2""#[..], &b"<sip:z>"[..]]
        );
        let v: Vec<_> = split_commas(b"a,,b ,").collect();
        assert_eq!(v, vec![&b"a"[..], &b""[..], &b"b"[..], &b""[..]]);
    }

    #[test]
    fn numbers_reject_overflow_and_allow_leading_zeros() {
        assert_eq!(parse_u32(b"0009"), Some(9));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(&[b'0'; 40]), Some(0));
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"-1"), None);
    }

    #[test]
    fn find_byte_agrees_with_position() {
        let hay: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for n in [0u8, 1, 10, 37, 0x80, 0xff, 0x6f] {
            for len in 0..hay.len() {
                assert_eq!(
                    find_byte(&hay[..len], n),
                    hay[..len].iter().position(|&b| b == n),
                    "{n} {len}"
                );
                for from in 0..len.min(20) {
                    assert_eq!(
                        find_byte_wide(&hay[from..len], n),
                        hay[from..len].iter().position(|&b| b == n),
                        "{n} {from} {len}"
                    );
                }
            }
        }
        assert_eq!(find_byte(b"abcdefgh\nxyz", b'\n'), Some(8));
        assert_eq!(find_byte(b"\x81\x80\n", b'\n'), Some(2));
        assert_eq!(
            find_byte_wide(b"abcdefghijklmnopqrstuvw\nxyz", b'\n'),
            Some(23)
        );
        assert_eq!(
            find_byte_wide(b"\x81\x80\nabcdefghijklmnopqrstuvw", b'\n'),
            Some(2)
        );
    }

    #[test]
    fn token_case_folding() {
        assert!(eq_token_ci(b"Call-ID", b"call-id"));
        assert!(eq_token_ci(b"MAX-FORWARDS", b"Max-Forwards"));
        assert!(!eq_token_ci(b"To", b"Tp"));
        assert!(!eq_token_ci(b"To", b"Tox"));
    }

    #[test]
    fn quoted_pairs() {
        let mut c = Cursor::new(br#""J Rosenberg \\\"" x"#);
        let inner = c.quoted().unwrap();
        assert_eq!(unescape_quoted(inner), r#"J Rosenberg \""#);
        assert!(Cursor::new(b"\"open").quoted().is_err());
    }
}
