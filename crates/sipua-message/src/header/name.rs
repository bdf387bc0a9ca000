//! Header names (RFC 3261 §7.3, §20) with their compact forms (§7.3.3) and case-insensitive
//! comparison.

use std::fmt;
use std::hash::{Hash, Hasher};

macro_rules! header_names {
    ($( $variant:ident => $canon:literal, $lower:literal $(, $compact:literal)? ; )*) => {
        /// A header name. Known headers are variants; anything else is [`HeaderName::Other`],
        /// compared case-insensitively. Compact forms (`v`, `f`, `i`, ...) map to the full name.
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $variant,
            )*
            /// An extension header, as written.
            Other(String),
        }

        /// A known header name without data: what a parsed message's index stores.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Known {
            $( $variant, )*
        }

        impl Known {
            /// Every canonical spelling, then the compact forms.
            const SPELLINGS: &'static [(&'static [u8], Known)] = &[
                $( ($canon.as_bytes(), Known::$variant), )*
                $( $( (&[$compact as u32 as u8], Known::$variant), )? )*
            ];

            /// The public name.
            pub(crate) fn name(self) -> HeaderName {
                match self {
                    $( Known::$variant => HeaderName::$variant, )*
                }
            }
        }

        impl HeaderName {
            /// The data-less form of a known name.
            pub(crate) fn to_known(&self) -> Option<Known> {
                match self {
                    $( HeaderName::$variant => Some(Known::$variant), )*
                    HeaderName::Other(_) => None,
                }
            }

            /// The canonical spelling, as written when sipua serialises the header.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// The static canonical name of a known header (used in error messages).
            pub(crate) fn static_name(&self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(_) => "extension",
                }
            }

            /// The compact form (RFC 3261 §7.3.3), if the header has one.
            pub fn compact(&self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Looks up a name as it appears on the wire (any case, compact forms too).
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                HeaderName::known(name).map_or_else(|| HeaderName::Other(String::from_utf8_lossy(name).into_owned()), Known::name)
            }
        }
    };
}

header_names! {
    Accept => "Accept", b"accept";
    AcceptContact => "Accept-Contact", b"accept-contact", 'a';
    AcceptEncoding => "Accept-Encoding", b"accept-encoding";
    AcceptLanguage => "Accept-Language", b"accept-language";
    AlertInfo => "Alert-Info", b"alert-info";
    Allow => "Allow", b"allow";
    AllowEvents => "Allow-Events", b"allow-events", 'u';
    AuthenticationInfo => "Authentication-Info", b"authentication-info";
    Authorization => "Authorization", b"authorization";
    CallId => "Call-ID", b"call-id", 'i';
    CallInfo => "Call-Info", b"call-info";
    Contact => "Contact", b"contact", 'm';
    ContentDisposition => "Content-Disposition", b"content-disposition";
    ContentEncoding => "Content-Encoding", b"content-encoding", 'e';
    ContentLanguage => "Content-Language", b"content-language";
    ContentLength => "Content-Length", b"content-length", 'l';
    ContentType => "Content-Type", b"content-type", 'c';
    CSeq => "CSeq", b"cseq";
    Date => "Date", b"date";
    ErrorInfo => "Error-Info", b"error-info";
    Event => "Event", b"event", 'o';
    Expires => "Expires", b"expires";
    From => "From", b"from", 'f';
    Identity => "Identity", b"identity", 'y';
    InReplyTo => "In-Reply-To", b"in-reply-to";
    MaxForwards => "Max-Forwards", b"max-forwards";
    MimeVersion => "MIME-Version", b"mime-version";
    MinExpires => "Min-Expires", b"min-expires";
    MinSe => "Min-SE", b"min-se";
    Organization => "Organization", b"organization";
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity";
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity";
    Path => "Path", b"path";
    Priority => "Priority", b"priority";
    Privacy => "Privacy", b"privacy";
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate";
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization";
    ProxyRequire => "Proxy-Require", b"proxy-require";
    RAck => "RAck", b"rack";
    Reason => "Reason", b"reason";
    RecordRoute => "Record-Route", b"record-route";
    ReferSub => "Refer-Sub", b"refer-sub";
    ReferTo => "Refer-To", b"refer-to", 'r';
    ReferredBy => "Referred-By", b"referred-by", 'b';
    RejectContact => "Reject-Contact", b"reject-contact", 'j';
    Replaces => "Replaces", b"replaces";
    ReplyTo => "Reply-To", b"reply-to";
    Require => "Require", b"require";
    RetryAfter => "Retry-After", b"retry-after";
    Route => "Route", b"route";
    RSeq => "RSeq", b"rseq";
    Server => "Server", b"server";
    ServiceRoute => "Service-Route", b"service-route";
    SessionExpires => "Session-Expires", b"session-expires", 'x';
    SipETag => "SIP-ETag", b"sip-etag";
    SipIfMatch => "SIP-If-Match", b"sip-if-match";
    Subject => "Subject", b"subject", 's';
    SubscriptionState => "Subscription-State", b"subscription-state";
    Supported => "Supported", b"supported", 'k';
    Timestamp => "Timestamp", b"timestamp";
    To => "To", b"to", 't';
    Unsupported => "Unsupported", b"unsupported";
    UserAgent => "User-Agent", b"user-agent";
    Via => "Via", b"via", 'v';
    Warning => "Warning", b"warning";
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate";
}

/// A known spelling as up to three little-endian words (bytes 0 to 8, the last 8 bytes of a
/// name longer than 8, bytes 8 to 16 of a name longer than 16; zero-padded), lower case, with
/// the case bit of every letter in a mask: a name matches when `word | mask == lower` for
/// every word, which takes letters in any case and every other byte exactly.
#[derive(Clone, Copy)]
struct Spelling {
    len: u8,
    known: Known,
    lower: [u64; 3],
    mask: [u64; 3],
}

/// Longest known spelling.
const MAX_LEN: usize = 20;

/// How [`word`] maps each byte.
#[derive(Clone, Copy)]
enum Map {
    AsIs,
    Lower,
    CaseBit,
}

/// Up to 8 bytes of `s` from `at`, as a little-endian word, each byte mapped by `map`.
const fn word(s: &[u8], at: usize, map: Map) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < 8 && at + i < s.len() {
        let b = s[at + i];
        let b = match map {
            Map::AsIs => b,
            Map::Lower => b.to_ascii_lowercase(),
            Map::CaseBit if b.is_ascii_alphabetic() => 0x20,
            Map::CaseBit => 0,
        };
        v |= (b as u64) << (8 * i);
        i += 1;
    }
    v
}

/// The words of a spelling (see [`Spelling`]), bytes mapped by `map`.
const fn words_of(s: &[u8], map: Map) -> [u64; 3] {
    let n = s.len();
    [
        word(s, 0, map),
        if n > 8 { word(s, n - 8, map) } else { 0 },
        if n > 16 { word(s, 8, map) } else { 0 },
    ]
}

/// The slot in [`SLOTS`] of a name of `n` bytes with the first two words `w0` and `w1`: the
/// case bit is set in every byte first, so every spelling of a name lands in the same slot.
#[inline]
const fn slot_of(w0: u64, w1: u64, n: usize) -> usize {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let x = ((w0 | CASE) ^ (w1 | CASE).rotate_left(29)).wrapping_add(n as u64);
    // a multiplier for which the known spellings fall in distinct slots (checked below)
    (x.wrapping_mul(0x5579_85e0_911a_e38d) >> 55) as usize
}

const EMPTY: u8 = u8::MAX;

static SPELLINGS: [Spelling; Known::SPELLINGS.len()] = {
    let mut t = [Spelling {
        len: 0,
        known: Known::Via,
        lower: [0; 3],
        mask: [0; 3],
    }; Known::SPELLINGS.len()];
    let mut i = 0;
    while i < t.len() {
        let (s, known) = Known::SPELLINGS[i];
        assert!(!s.is_empty() && s.len() <= MAX_LEN);
        t[i] = Spelling {
            len: s.len() as u8,
            known,
            lower: words_of(s, Map::Lower),
            mask: words_of(s, Map::CaseBit),
        };
        i += 1;
    }
    t
};

/// Index into [`SPELLINGS`] by [`slot_of`], or [`EMPTY`].
static SLOTS: [u8; 512] = {
    let mut t = [EMPTY; 512];
    let mut i = 0;
    assert!(SPELLINGS.len() < EMPTY as usize);
    while i < SPELLINGS.len() {
        let s = &SPELLINGS[i];
        let slot = slot_of(s.lower[0], s.lower[1], s.len as usize);
        assert!(t[slot] == EMPTY, "two known header names share a slot");
        t[slot] = i as u8;
        i += 1;
    }
    t
};

impl Known {
    /// The known header named by the first `n` bytes of `s`, letters in any case and every
    /// other byte exactly (for a token, the same answer as [`HeaderName::known`]): one hash
    /// and one comparison of words.
    #[inline]
    pub(crate) fn lookup_in(s: &[u8], n: usize) -> Option<Known> {
        if n == 0 || n > MAX_LEN || n > s.len() {
            return None;
        }
        let load = |at: usize| {
            s.get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        };
        let w0 = if s.len() >= 8 {
            // the bytes after the name are masked off
            load(0) & (u64::MAX >> (64 - 8 * n.min(8)))
        } else {
            word(&s[..n], 0, Map::AsIs)
        };
        let w1 = if n > 8 { load(n - 8) } else { 0 };
        let sp = SPELLINGS.get(usize::from(SLOTS[slot_of(w0, w1, n)]))?;
        if usize::from(sp.len) != n {
            return None;
        }
        let w2 = if n > 16 { load(8) } else { 0 };
        ((w0 | sp.mask[0]) == sp.lower[0]
            && (w1 | sp.mask[1]) == sp.lower[1]
            && (w2 | sp.mask[2]) == sp.lower[2])
            .then_some(sp.known)
    }

    /// [`Known::lookup_in`] for a whole slice.
    #[cfg(test)]
    fn lookup(name: &[u8]) -> Option<Known> {
        Known::lookup_in(name, name.len())
    }
}

impl HeaderName {
    /// The known header `name` stands for, without allocating: a jump on (length, first
    /// and last letter), then one comparison. (Generated from the table above.)
    pub(crate) fn known(name: &[u8]) -> Option<Known> {
        let (Some(&first), Some(&last)) = (name.first(), name.last()) else {
            return None;
        };
        match (
            name.len(),
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase(),
        ) {
            (1, b'a', _) => Some(Known::AcceptContact),
            (1, b'b', _) => Some(Known::ReferredBy),
            (1, b'c', _) => Some(Known::ContentType),
            (1, b'e', _) => Some(Known::ContentEncoding),
            (1, b'f', _) => Some(Known::From),
            (1, b'i', _) => Some(Known::CallId),
            (1, b'j', _) => Some(Known::RejectContact),
            (1, b'k', _) => Some(Known::Supported),
            (1, b'l', _) => Some(Known::ContentLength),
            (1, b'm', _) => Some(Known::Contact),
            (1, b'o', _) => Some(Known::Event),
            (1, b'r', _) => Some(Known::ReferTo),
            (1, b's', _) => Some(Known::Subject),
            (1, b't', _) => Some(Known::To),
            (1, b'u', _) => Some(Known::AllowEvents),
            (1, b'v', _) => Some(Known::Via),
            (1, b'x', _) => Some(Known::SessionExpires),
            (1, b'y', _) => Some(Known::Identity),
            (2, b't', b'o') if eq_name(name, b"To") => Some(Known::To),
            (3, b'v', b'a') if eq_name(name, b"Via") => Some(Known::Via),
            (4, b'c', b'q') if eq_name(name, b"CSeq") => Some(Known::CSeq),
            (4, b'd', b'e') if eq_name(name, b"Date") => Some(Known::Date),
            (4, b'f', b'm') if eq_name(name, b"From") => Some(Known::From),
            (4, b'p', b'h') if eq_name(name, b"Path") => Some(Known::Path),
            (4, b'r', b'k') if eq_name(name, b"RAck") => Some(Known::RAck),
            (4, b'r', b'q') if eq_name(name, b"RSeq") => Some(Known::RSeq),
            (5, b'a', b'w') if eq_name(name, b"Allow") => Some(Known::Allow),
            (5, b'e', b't') if eq_name(name, b"Event") => Some(Known::Event),
            (5, b'r', b'e') if eq_name(name, b"Route") => Some(Known::Route),
            (6, b'a', b't') if eq_name(name, b"Accept") => Some(Known::Accept),
            (6, b'm', b'e') if eq_name(name, b"Min-SE") => Some(Known::MinSe),
            (6, b'r', b'n') if eq_name(name, b"Reason") => Some(Known::Reason),
            (6, b's', b'r') if eq_name(name, b"Server") => Some(Known::Server),
            (7, b'c', b'd') if eq_name(name, b"Call-ID") => Some(Known::CallId),
            (7, b'c', b't') if eq_name(name, b"Contact") => Some(Known::Contact),
            (7, b'e', b's') if eq_name(name, b"Expires") => Some(Known::Expires),
            (7, b'p', b'y') if eq_name(name, b"Privacy") => Some(Known::Privacy),
            (7, b'r', b'e') if eq_name(name, b"Require") => Some(Known::Require),
            (7, b's', b't') if eq_name(name, b"Subject") => Some(Known::Subject),
            (7, b'w', b'g') if eq_name(name, b"Warning") => Some(Known::Warning),
            (8, b'i', b'y') if eq_name(name, b"Identity") => Some(Known::Identity),
            (8, b'p', b'y') if eq_name(name, b"Priority") => Some(Known::Priority),
            (8, b'r', b'o') if eq_name(name, b"Refer-To") => Some(Known::ReferTo),
            (8, b'r', b'o') if eq_name(name, b"Reply-To") => Some(Known::ReplyTo),
            (8, b'r', b's') if eq_name(name, b"Replaces") => Some(Known::Replaces),
            (8, b's', b'g') if eq_name(name, b"SIP-ETag") => Some(Known::SipETag),
            (9, b'c', b'o') if eq_name(name, b"Call-Info") => Some(Known::CallInfo),
            (9, b'r', b'b') if eq_name(name, b"Refer-Sub") => Some(Known::ReferSub),
            (9, b's', b'd') if eq_name(name, b"Supported") => Some(Known::Supported),
            (9, b't', b'p') if eq_name(name, b"Timestamp") => Some(Known::Timestamp),
            (10, b'a', b'o') if eq_name(name, b"Alert-Info") => Some(Known::AlertInfo),
            (10, b'e', b'o') if eq_name(name, b"Error-Info") => Some(Known::ErrorInfo),
            (10, b'u', b't') if eq_name(name, b"User-Agent") => Some(Known::UserAgent),
            (11, b'i', b'o') if eq_name(name, b"In-Reply-To") => Some(Known::InReplyTo),
            (11, b'm', b's') if eq_name(name, b"Min-Expires") => Some(Known::MinExpires),
            (11, b'r', b'r') if eq_name(name, b"Retry-After") => Some(Known::RetryAfter),
            (11, b'r', b'y') if eq_name(name, b"Referred-By") => Some(Known::ReferredBy),
            (11, b'u', b'd') if eq_name(name, b"Unsupported") => Some(Known::Unsupported),
            (12, b'a', b's') if eq_name(name, b"Allow-Events") => Some(Known::AllowEvents),
            (12, b'c', b'e') if eq_name(name, b"Content-Type") => Some(Known::ContentType),
            (12, b'm', b'n') if eq_name(name, b"MIME-Version") => Some(Known::MimeVersion),
            (12, b'm', b's') if eq_name(name, b"Max-Forwards") => Some(Known::MaxForwards),
            (12, b'o', b'n') if eq_name(name, b"Organization") => Some(Known::Organization),
            (12, b'r', b'e') if eq_name(name, b"Record-Route") => Some(Known::RecordRoute),
            (12, b's', b'h') if eq_name(name, b"SIP-If-Match") => Some(Known::SipIfMatch),
            (13, b'a', b'n') if eq_name(name, b"Authorization") => Some(Known::Authorization),
            (13, b'p', b'e') if eq_name(name, b"Proxy-Require") => Some(Known::ProxyRequire),
            (13, b's', b'e') if eq_name(name, b"Service-Route") => Some(Known::ServiceRoute),
            (14, b'a', b't') if eq_name(name, b"Accept-Contact") => Some(Known::AcceptContact),
            (14, b'c', b'h') if eq_name(name, b"Content-Length") => Some(Known::ContentLength),
            (14, b'r', b't') if eq_name(name, b"Reject-Contact") => Some(Known::RejectContact),
            (15, b'a', b'e') if eq_name(name, b"Accept-Language") => Some(Known::AcceptLanguage),
            (15, b'a', b'g') if eq_name(name, b"Accept-Encoding") => Some(Known::AcceptEncoding),
            (15, b's', b's') if eq_name(name, b"Session-Expires") => Some(Known::SessionExpires),
            (16, b'c', b'e') if eq_name(name, b"Content-Language") => Some(Known::ContentLanguage),
            (16, b'c', b'g') if eq_name(name, b"Content-Encoding") => Some(Known::ContentEncoding),
            (16, b'w', b'e') if eq_name(name, b"WWW-Authenticate") => Some(Known::WwwAuthenticate),
            (18, b'p', b'e') if eq_name(name, b"Proxy-Authenticate") => {
                Some(Known::ProxyAuthenticate)
            }
            (18, b's', b'e') if eq_name(name, b"Subscription-State") => {
                Some(Known::SubscriptionState)
            }
            (19, b'a', b'o') if eq_name(name, b"Authentication-Info") => {
                Some(Known::AuthenticationInfo)
            }
            (19, b'c', b'n') if eq_name(name, b"Content-Disposition") => {
                Some(Known::ContentDisposition)
            }
            (19, b'p', b'n') if eq_name(name, b"Proxy-Authorization") => {
                Some(Known::ProxyAuthorization)
            }
            (19, b'p', b'y') if eq_name(name, b"P-Asserted-Identity") => {
                Some(Known::PAssertedIdentity)
            }
            (20, b'p', b'y') if eq_name(name, b"P-Preferred-Identity") => {
                Some(Known::PPreferredIdentity)
            }
            _ => None,
        }
    }

    /// A name from text; known names become their variant.
    pub fn new(name: &str) -> HeaderName {
        HeaderName::from_bytes(name.as_bytes())
    }

    /// Headers whose value is a comma-separated list that may be split across several header
    /// lines (RFC 3261 §7.3.1).
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Accept
                | AcceptEncoding
                | AcceptLanguage
                | AlertInfo
                | Allow
                | AllowEvents
                | CallInfo
                | Contact
                | ContentEncoding
                | ContentLanguage
                | ErrorInfo
                | InReplyTo
                | PAssertedIdentity
                | PPreferredIdentity
                | Path
                | ProxyRequire
                | Reason
                | RecordRoute
                | Require
                | Route
                | ServiceRoute
                | Supported
                | Unsupported
                | Via
                | Warning
                | AcceptContact
                | RejectContact
        )
    }
}

/// Case-insensitive comparison, with a fast path for the canonical spelling most peers use.
#[inline]
fn eq_name(name: &[u8], canon: &[u8]) -> bool {
    // `name` is a token (checked by the caller)
    crate::scan::eq_token_ci(name, canon)
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (HeaderName::Other(_), _) | (_, HeaderName::Other(_)) => false,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for HeaderName {}

impl Hash for HeaderName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            HeaderName::Other(s) => {
                state.write_u8(0xff);
                for b in s.bytes() {
                    state.write_u8(b.to_ascii_lowercase());
                }
            }
            other => std::mem::discriminant(other).hash(state),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> HeaderName {
        HeaderName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_found_from_its_canonical_spelling() {
        for &(_, k) in Known::SPELLINGS {
            let name = k.name();
            assert_eq!(
                Known::lookup(name.as_str().as_bytes()),
                name.to_known(),
                "{name:?}"
            );
            assert_eq!(name.to_known(), Some(k));
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_knows_compact_forms() {
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"L"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"C%6Fntact"),
            HeaderName::Other("c%6fntact".into())
        );
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_eq!(HeaderName::Via.compact(), Some('v'));
    }

    #[test]
    fn lookup_agrees_with_known_on_tokens() {
        // every spelling in several cases, and near misses
        let mut names: Vec<Vec<u8>> = Vec::new();
        for &(s, _) in Known::SPELLINGS {
            names.push(s.to_vec());
            names.push(s.to_ascii_lowercase());
            names.push(s.to_ascii_uppercase());
            let alt: Vec<u8> = s
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            names.push(alt);
            for i in 0..s.len() {
                for b in [b'-', b'.', b'x', b'!', b'~', b'0'] {
                    let mut n = s.to_vec();
                    n[i] = b;
                    names.push(n);
                }
                names.push([&s[..i], &s[i + 1..]].concat());
            }
            names.push([s, b"x"].concat());
            names.push([b"x", s].concat());
        }
        let token = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 1 + (seed % 21) as usize;
            names.push(
                (0..len)
                    .map(|i| token[((seed >> (i * 3)) as usize ^ (i * 7)) % token.len()])
                    .collect(),
            );
        }
        for n in &names {
            if n.iter().all(|&b| crate::scan::is_token(b)) {
                let known = HeaderName::known(n);
                assert_eq!(Known::lookup(n), known, "{}", String::from_utf8_lossy(n));
                // followed by other bytes, as in a message
                for tail in [
                    &b":"[..],
                    b": x",
                    b" : value\r\n",
                    b"xxxxxxxxxxxxxxxxxxxxxxx",
                ] {
                    let line = [&n[..], tail].concat();
                    assert_eq!(Known::lookup_in(&line, n.len()), known);
                }
            }
        }
        for &(s, k) in Known::SPELLINGS {
            assert_eq!(Known::lookup(s), Some(k));
        }
        // exact on everything but letters
        assert_eq!(Known::lookup(b"Call\rID"), None);
        assert_eq!(Known::lookup(b"Call-ID\0"), None);
        assert_eq!(Known::lookup(b""), None);
    }
}
