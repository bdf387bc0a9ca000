//! `tel:` URIs (RFC 3966): the number, its parameters, comparison and writing.

use super::*;

impl TelUri {
    pub(super) fn parse_rest(s: &[u8]) -> Result<TelUri> {
        let end = memchr::memchr(b';', s).unwrap_or(s.len());
        let number = &s[..end];
        let ok = |b: u8| {
            b.is_ascii_hexdigit() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
        };
        if number.is_empty() || !number.iter().all(|&b| ok(b)) {
            return Err(err("bad telephone number"));
        }
        let mut params = Vec::new();
        if end < s.len() {
            for p in s[end + 1..].split(|&b| b == b';') {
                let (n, v) = match memchr::memchr(b'=', p) {
                    Some(e) => (&p[..e], Some(&p[e + 1..])),
                    None => (p, None),
                };
                if n.is_empty() {
                    return Err(err("empty tel URI parameter"));
                }
                let n = decode(n, is_param_char, "bad character in tel URI parameter")?;
                let v = v
                    .map(|v| decode(v, is_param_char, "bad character in tel URI parameter"))
                    .transpose()?;
                params.push((n, v));
            }
        }
        Ok(TelUri {
            number: scan::string(number),
            params: UriParams(params),
        })
    }

    /// Whether the number is global (starts with `+`).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// Comparison per RFC 3966 §4: numbers without visual separators, parameters in any order.
    pub fn equivalent(&self, o: &TelUri) -> bool {
        let digits = |s: &str| -> String {
            s.chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                .collect::<String>()
                .to_ascii_lowercase()
        };
        let norm = |p: &UriParams| -> Vec<(String, Option<String>)> {
            let mut v: Vec<_> =
                p.0.iter()
                    .map(|(n, v)| {
                        (
                            n.to_ascii_lowercase(),
                            v.as_ref().map(|v| v.to_ascii_lowercase()),
                        )
                    })
                    .collect();
            v.sort();
            v
        };
        digits(&self.number) == digits(&o.number) && norm(&self.params) == norm(&o.params)
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        write_uri_params(f, &self.params)
    }
}
