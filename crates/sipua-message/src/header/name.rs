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

        impl HeaderName {
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
                let mut buf = [0u8; 32];
                if name.len() <= buf.len() {
                    let lower = &mut buf[..name.len()];
                    lower.copy_from_slice(name);
                    lower.make_ascii_lowercase();
                    let found = match &*lower {
                        $(
                            $lower => Some(HeaderName::$variant),
                            $( [c] if *c == $compact as u8 => Some(HeaderName::$variant), )?
                        )*
                        _ => None,
                    };
                    if let Some(h) = found {
                        return h;
                    }
                }
                HeaderName::Other(String::from_utf8_lossy(name).into_owned())
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

impl HeaderName {
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
            Accept | AcceptEncoding | AcceptLanguage | AlertInfo | Allow | AllowEvents | CallInfo | Contact
                | ContentEncoding | ContentLanguage | ErrorInfo | InReplyTo | PAssertedIdentity
                | PPreferredIdentity | Path | ProxyRequire | Reason | RecordRoute | Require | Route
                | ServiceRoute | Supported | Unsupported | Via | Warning | AcceptContact | RejectContact
        )
    }
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
    fn lookup_is_case_insensitive_and_knows_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"L"), HeaderName::ContentLength);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other("c%6fntact".into()));
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_eq!(HeaderName::Via.compact(), Some('v'));
    }
}
