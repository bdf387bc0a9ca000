//! Request methods (RFC 3261 §7.1, §27.4 and the extensions that register methods).
//! Methods are case-sensitive tokens.

use std::fmt;

use crate::error::{ErrorKind, ParseError, Result};
use crate::scan;

/// A SIP method. Unknown methods are kept as [`Method::Extension`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// REGISTER (RFC 3261)
    Register,
    /// OPTIONS (RFC 3261)
    Options,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// MESSAGE (RFC 3428)
    Message,
    /// REFER (RFC 3515)
    Refer,
    /// Any other token.
    Extension(String),
}

impl Method {
    /// Parses a method token (case-sensitive, RFC 3261 §7.1).
    pub fn parse(s: &[u8]) -> Result<Method> {
        Ok(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"MESSAGE" => Method::Message,
            b"REFER" => Method::Refer,
            other if scan::all_token(other) => Method::Extension(scan::string(other)),
            _ => return Err(ParseError::new(ErrorKind::StartLine, "bad method")),
        })
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Method> {
        Method::parse(s.as_bytes())
    }
}
