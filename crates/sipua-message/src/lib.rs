//! # sipua-message
//!
//! The SIP grammar of sipua: parse and serialise SIP messages (RFC 3261 §7, §20, §25), URIs
//! (§19, RFC 3966, RFC 5118) and typed headers, with no I/O and no clock.
//!
//! - [`Message::parse`] takes a datagram or a frame and gives a [`Request`] or [`Response`]
//!   whose core headers (Via, From, To, Call-ID, CSeq, Max-Forwards) are already checked;
//!   errors are [`ParseError`]s whose text fits a 400 reason phrase.
//! - Parsing is lazy and lossless: other headers are parsed on demand
//!   ([`Request::typed`]), and an unmodified message serialises back byte for byte.
//! - [`StreamFramer`] cuts messages out of a TCP/TLS byte stream (RFC 3261 §18.3) and answers
//!   RFC 5626 keep-alives.
//! - [`RequestBuilder`] and [`Response::from_request`] build messages.
//!
//! ```
//! use sipua_message::{Message, header::Expires};
//! let raw = b"REGISTER sip:example.com SIP/2.0\r\n\
//!     v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnashds7\r\n\
//!     f: <sip:bob@example.com>;tag=456248\r\nt: <sip:bob@example.com>\r\n\
//!     i: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nExpires: 7200\r\nl: 0\r\n\r\n";
//! let msg = Message::parse(raw).unwrap();
//! let req = msg.as_request().unwrap();
//! assert_eq!(req.typed::<Expires>().unwrap().unwrap(), Expires(7200));
//! assert_eq!(msg.to_bytes(), &raw[..]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod error;
mod framer;
pub mod header;
mod message;
mod method;
mod name_addr;
mod params;
mod scan;
pub mod sdp;
mod status;
#[doc(hidden)] // shared with the other sipua crates, not part of the API
pub mod text;
mod uri;

pub use builder::{error_response, RequestBuilder, ViaTemplate, MAX_ERROR_RESPONSE};
pub use error::{ErrorKind, ParseError, Result};
pub use framer::{Frame, FramerError, StreamFramer};
pub use header::{Header, HeaderName, HeaderRef, Headers, Transport, Via, ViaText};
pub use message::{
    Message, Request, Response, ViaKey, MAX_HEADERS, MAX_LINE_LENGTH, MAX_REQUEST_LINE, MAX_VIAS,
};
pub use method::Method;
pub use name_addr::NameAddr;
pub use params::{Param, Params};
pub use status::reason_phrase;
pub use uri::{AbsoluteUri, Host, Scheme, SipUri, TelUri, Uri, UriParams};
