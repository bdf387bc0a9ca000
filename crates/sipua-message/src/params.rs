//! Semicolon-separated parameters (`generic-param`, RFC 3261 §25.1) as they follow header values.
//!
//! Values keep their meaning, not their spelling: a quoted value is stored unquoted and
//! written back quoted. Names compare case-insensitively (RFC 3261 §7.3.1).

use std::fmt;

use crate::error::{ErrorKind, ParseError, Result};
use crate::scan::{self, Cursor};

/// One `name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Parameter name as written.
    pub name: String,
    /// Value, unquoted; `None` for a flag such as `lr` or `rport`.
    pub value: Option<String>,
    /// Whether the value is written as a quoted string.
    pub quoted: bool,
}

/// An ordered list of header parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// No parameters.
    pub const fn new() -> Self {
        Params(Vec::new())
    }

    /// The first parameter named `name` (case-insensitive): `Some(None)` for a flag,
    /// `Some(Some(v))` for a value, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The value of `name`, if present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// Whether `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value` (replacing an existing one in place, else appending).
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let quoted = set_quoted(value);
        if let Some(p) = self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            p.value = value.map(str::to_owned);
            p.quoted = quoted;
        } else {
            self.0.push(Param {
                name: name.to_owned(),
                value: value.map(str::to_owned),
                quoted,
            });
        }
    }

    /// Sets a value that must be written quoted (for example `+sip.instance`).
    pub fn set_quoted(&mut self, name: &str, value: &str) {
        self.set(name, Some(value));
        if let Some(p) = self
            .0
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            p.quoted = true;
        }
    }

    /// Removes every parameter named `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|p| !p.name.eq_ignore_ascii_case(name));
    }

    /// Iterates over the parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.0.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `*( SEMI generic-param )` at the cursor, stopping before a `,` or at the end.
    pub(crate) fn parse(c: &mut Cursor<'_>) -> Result<Params> {
        Params::parse_skipping(c, None)
    }

    /// [`Params::parse`] leaving out the parameters named `skip` (case-insensitive): what
    /// [`Params::remove`] would leave, without making them.
    pub(crate) fn parse_skipping(c: &mut Cursor<'_>, skip: Option<&[u8]>) -> Result<Params> {
        let mut params = Vec::new();
        scan_params(c, |name, value| {
            if skip.is_some_and(|s| name.eq_ignore_ascii_case(s)) {
                return;
            }
            let (value, quoted) = match value {
                Some((v, true)) => (Some(scan::unescape_quoted(v)), true),
                Some((v, false)) => (Some(scan::string(v)), false),
                None => (None, false),
            };
            params.push(Param {
                name: scan::string(name),
                value,
                quoted,
            });
        })?;
        Ok(Params(params))
    }
}

/// Walks the parameters at the cursor and returns the value of `name`, which must be a plain
/// token when present (the `tag` and `branch` of RFC 3261 §25.1); an error with the reason
/// `not_token` otherwise.
///
/// The same walk as [`scan_params`] (same errors, same end), written out for speed: this
/// runs for the top Via, From and To of every message.
pub(crate) fn find_token_param<'a>(
    c: &mut Cursor<'a>,
    name: &[u8],
    not_token: &'static str,
) -> Result<Option<&'a [u8]>> {
    // `rest` is what is left of `c.s`
    let s = c.s;
    let mut rest = s.get(c.pos..).unwrap_or_default();
    let mut found = None;
    let mut bad = false;
    #[inline(always)]
    fn skip_ws(r: &[u8]) -> &[u8] {
        match r.first() {
            Some(&b) if scan::is_ws(b) => {
                let n = r.iter().position(|&b| !scan::is_ws(b)).unwrap_or(r.len());
                &r[n..]
            }
            _ => r,
        }
    }
    #[inline(always)]
    fn token_len(r: &[u8]) -> usize {
        r.iter()
            .position(|&b| !scan::is_token(b))
            .unwrap_or(r.len())
    }
    loop {
        rest = skip_ws(rest);
        let Some((b';', after)) = rest.split_first() else {
            break;
        };
        rest = skip_ws(after);
        let len = token_len(rest);
        if len == 0 {
            return Err(ParseError::new(ErrorKind::HeaderValue, "empty parameter"));
        }
        let (pname, after) = rest.split_at(len);
        // the first `name` decides; later ones are only checked like any other
        let wanted = found.is_none() && !bad && scan::eq_token_ci(pname, name);
        rest = after;
        let after = skip_ws(rest);
        let Some((b'=', after)) = after.split_first() else {
            rest = after;
            bad |= wanted;
            continue;
        };
        rest = skip_ws(after);
        if rest.first() == Some(&b'"') {
            let mut q = Cursor {
                s,
                pos: s.len() - rest.len(),
            };
            q.quoted()?;
            rest = s.get(q.pos..).unwrap_or_default();
            bad |= wanted;
            continue;
        }
        // a wanted value: its token characters first, then whatever else a value may hold
        let token = if wanted { token_len(rest) } else { 0 };
        let len = token
            + rest[token..]
                .iter()
                .position(|&b| !PLAIN_VALUE[b as usize])
                .unwrap_or(rest.len() - token);
        if len == 0 {
            return Err(ParseError::new(
                ErrorKind::HeaderValue,
                "empty parameter value",
            ));
        }
        let (value, after) = rest.split_at(len);
        if wanted {
            if token == len {
                found = Some(value);
            } else {
                bad = true;
            }
        }
        rest = after;
    }
    c.pos = s.len() - rest.len();
    if bad {
        return Err(ParseError::new(ErrorKind::HeaderValue, not_token));
    }
    Ok(found)
}

/// Walks `*( SEMI generic-param )` at the cursor without allocating, calling `f` with each
/// name and raw value (the inside of the quotes, still escaped, when `quoted`); stops before
/// a `,` or at the end.
pub(crate) fn scan_params<'a>(
    c: &mut Cursor<'a>,
    mut f: impl FnMut(&'a [u8], Option<(&'a [u8], bool)>),
) -> Result<()> {
    // an index loop over the slice: this runs for every Via, From and To of every message
    let s = c.s;
    let n = s.len();
    let mut i = c.pos;
    let skip_ws = |mut i: usize| {
        while i < n && scan::is_ws(s[i]) {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= n || s[i] != b';' {
            c.pos = i;
            return Ok(());
        }
        i = skip_ws(i + 1);
        let name_start = i;
        while i < n && scan::is_token(s[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(ParseError::new(ErrorKind::HeaderValue, "empty parameter"));
        }
        let name = &s[name_start..i];
        let j = skip_ws(i);
        let value = if j < n && s[j] == b'=' {
            i = skip_ws(j + 1);
            if i < n && s[i] == b'"' {
                c.pos = i;
                let q = c.quoted()?;
                i = c.pos;
                Some((q, true))
            } else {
                let value_start = i;
                while i < n && PLAIN_VALUE[s[i] as usize] {
                    i += 1;
                }
                if i == value_start {
                    return Err(ParseError::new(
                        ErrorKind::HeaderValue,
                        "empty parameter value",
                    ));
                }
                Some((&s[value_start..i], false))
            }
        } else {
            None
        };
        f(name, value);
    }
}

/// Characters allowed in an unquoted `gen-value`: token or host (IPv6 references included).
static PLAIN_VALUE: [bool; 256] = scan::table(b"-.!%*_+`'~:[]");

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Params {
    /// Writes `;name=value...` as [`fmt::Display`] does, into any [`fmt::Write`].
    pub(crate) fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        for p in &self.0 {
            write_param(f, &p.name, p.value.as_deref(), p.quoted)?;
        }
        Ok(())
    }

    /// Writes the parameters as a copy given [`Params::set`]`(name, value)` would be written,
    /// without making the copy.
    pub(crate) fn write_with<W: fmt::Write>(
        &self,
        f: &mut W,
        name: &str,
        value: Option<&str>,
    ) -> fmt::Result {
        self.write_with_all(f, &[(name, value)])
    }

    /// Writes the parameters as a copy given [`Params::set`] for each of `set`, in order, would
    /// be written, without making the copy: the first parameter of each name takes its new
    /// value where it is, a name not present is appended (in the order given).
    pub(crate) fn write_with_all<W: fmt::Write>(
        &self,
        f: &mut W,
        set: &[(&str, Option<&str>)],
    ) -> fmt::Result {
        write_params_with(
            f,
            self.0
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_deref(), p.quoted)),
            set,
        )
    }
}

/// Writes the parameters `params` (name, value, quoted) as a [`Params`] holding them would
/// be written given [`Params::set`] for each of `set`, in order: the first parameter of each
/// name takes its new value where it is, a name not present is appended (in the order given).
/// At most 8 names in `set`.
pub(crate) fn write_params_with<'p, W: fmt::Write>(
    f: &mut W,
    params: impl Iterator<Item = (&'p str, Option<&'p str>, bool)>,
    set: &[(&str, Option<&str>)],
) -> fmt::Result {
    // which of `set` already found its parameter (a handful at most)
    let mut done = [false; 8];
    let done = done.get_mut(..set.len()).ok_or(fmt::Error)?;
    for (name, value, quoted) in params {
        let hit = set
            .iter()
            .enumerate()
            .position(|(i, (n, _))| !done[i] && name.eq_ignore_ascii_case(n));
        match hit {
            Some(i) => {
                done[i] = true;
                let value = set[i].1;
                write_param(f, name, value, set_quoted(value))?;
            }
            None => write_param(f, name, value, quoted)?,
        }
    }
    for (i, (name, value)) in set.iter().enumerate() {
        if !done[i] {
            write_param(f, name, *value, set_quoted(*value))?;
        }
    }
    Ok(())
}

/// Whether [`Params::set`] writes `value` quoted: when empty or not made of plain characters.
fn set_quoted(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.is_empty() || !v.bytes().all(|b| PLAIN_VALUE[b as usize]))
}

/// `;name`, `;name=value` or `;name="value"`.
fn write_param<W: fmt::Write>(
    f: &mut W,
    name: &str,
    value: Option<&str>,
    quoted: bool,
) -> fmt::Result {
    f.write_str(";")?;
    f.write_str(name)?;
    if let Some(v) = value {
        f.write_str("=")?;
        if quoted {
            let mut s = String::with_capacity(v.len() + 2);
            scan::write_quoted(&mut s, v);
            f.write_str(&s)?;
        } else {
            f.write_str(v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_with_spaces_quotes_and_flags() {
        let mut c = Cursor::new(b" ;   tag    = 1918181833n ; lr; q=0.5;x=\"a b\"");
        let p = Params::parse(&mut c).unwrap();
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("x"), Some("a b"));
        assert_eq!(p.to_string(), ";tag=1918181833n;lr;q=0.5;x=\"a b\"");
    }

    #[test]
    fn token_characters_are_plain_value_characters() {
        // find_token_param scans a wanted value as tokens, then as plain value characters
        for b in 0..=255u8 {
            assert!(!scan::is_token(b) || PLAIN_VALUE[b as usize], "{b}");
        }
    }

    /// What [`find_token_param`] must answer, by way of [`scan_params`]; the cursor position
    /// when it is `Ok`.
    fn slow_find<'a>(s: &'a [u8], name: &[u8]) -> (Result<Option<&'a [u8]>>, usize) {
        let mut c = Cursor::new(s);
        let mut found = None;
        let mut bad = false;
        let walk = scan_params(&mut c, |n, value| {
            if found.is_none() && !bad && scan::eq_token_ci(n, name) {
                match value {
                    Some((v, false)) if scan::all_token(v) => found = Some(v),
                    _ => bad = true,
                }
            }
        });
        let r = match walk {
            Err(e) => Err(e),
            Ok(()) if bad => Err(ParseError::new(ErrorKind::HeaderValue, "bad tag")),
            Ok(()) => Ok(found),
        };
        (r, c.pos)
    }

    #[test]
    fn find_token_param_walks_like_scan_params_on_generated_input() {
        // pieces a parameter list is made of, and bytes it should not hold
        const PIECES: &[&[u8]] = &[
            b";",
            b";",
            b";",
            b"=",
            b"=",
            b"tag",
            b"TaG",
            b"branch",
            b"z9hG4bK74bf9",
            b"x",
            b"0123456789abcdef01",
            b"192.0.2.1",
            b"[2001:db8::1]",
            b"a:b",
            b" ",
            b"\t",
            b"\r\n ",
            b"\"",
            b"\"q s\"",
            b"\"a\\\"b\"",
            b"\\",
            b",",
            b">",
            b"<",
            b"/",
            b"\x80",
            b"\xff",
            b"~",
            b"%",
            b"rport",
            b"received",
            b"lr",
            b"@",
            b"(",
            b"{",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        let mut input = Vec::new();
        for round in 0..200_000 {
            input.clear();
            let pieces = next(12);
            for _ in 0..pieces {
                if round % 4 == 0 {
                    // single bytes too, to reach odd corners
                    input.push(PIECES[next(PIECES.len())][0]);
                } else {
                    input.extend_from_slice(PIECES[next(PIECES.len())]);
                }
            }
            let start = next(3).min(input.len());
            for name in [&b"tag"[..], b"branch"] {
                let mut c = Cursor::new(&input);
                c.pos = start;
                let fast = find_token_param(&mut c, name, "bad tag");
                let (slow, pos) = {
                    let (r, p) = slow_find(&input[start..], name);
                    (r, p + start)
                };
                let shown = String::from_utf8_lossy(&input);
                assert_eq!(fast, slow, "{shown:?} from {start}");
                if fast.is_ok() {
                    assert_eq!(c.pos, pos, "{shown:?} from {start}");
                }
            }
        }
    }

    #[test]
    fn find_token_param_walks_like_scan_params() {
        for s in [
            &b";tag=1"[..],
            b" ; TAG = abc ;x",
            b";tag",
            b";tag=\"q\"",
            b";tag=a:b",
            b";x=1;tag=2;tag=[3]",
            b";tag=[3];tag=2",
            b";tag=",
            b";;tag=1",
            b";tag=\"open",
            b";tag=1, <sip:x>",
            b";tag=1 >",
            b";a=b=c",
            b"",
        ] {
            let mut c = Cursor::new(s);
            let fast = find_token_param(&mut c, b"tag", "bad tag");
            let mut c2 = Cursor::new(s);
            let mut found = None;
            let mut bad = false;
            let walk = scan_params(&mut c2, |n, value| {
                if found.is_none() && !bad && scan::eq_token_ci(n, b"tag") {
                    match value {
                        Some((v, false)) if scan::all_token(v) => found = Some(v),
                        _ => bad = true,
                    }
                }
            });
            let slow = match walk {
                Err(e) => Err(e),
                Ok(()) if bad => Err(ParseError::new(ErrorKind::HeaderValue, "bad tag")),
                Ok(()) => Ok(found),
            };
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(s));
            if fast.is_ok() {
                assert_eq!(c.pos, c2.pos, "{}", String::from_utf8_lossy(s));
            }
        }
    }

    #[test]
    fn empty_params_are_errors() {
        assert!(Params::parse(&mut Cursor::new(b";;")).is_err());
        assert!(Params::parse(&mut Cursor::new(b";a=")).is_err());
    }
}
