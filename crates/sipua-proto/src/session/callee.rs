//! The callee's side of the initial INVITE: which provisional responses go reliably and
//! when one may (RFC 3262 §3, §4).
//!
//! [`Callee`] knows what the INVITE said of 100rel ([`Rel100`]: required, supported, or
//! neither) and keeps whether a reliable provisional response awaits its PRACK:
//! - a provisional response goes reliably when the application asks for it, or always when
//!   the INVITE requires 100rel (§3); never a 100;
//! - asking for it when the INVITE neither requires nor supports 100rel is an error: the
//!   caller would not PRACK it;
//! - one reliable provisional response at a time: the next waits for the PRACK of the one
//!   before (§3, which allows more only once the first is acknowledged);
//! - the PRACK that comes, or its absence after 64 × T1 (the core's timer), ends the wait.
//!
//! Like the other session machines it sends nothing: the session task asks and does.

use sipua_message::{HeaderName, Request};

/// What an INVITE says of reliable provisional responses (RFC 3262 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel100 {
    /// `Require: 100rel`: every provisional response but a 100 goes reliably.
    Required,
    /// `Supported: 100rel`: the application may send them reliably.
    Supported,
    /// Neither: none may go reliably.
    Unsupported,
}

impl Rel100 {
    /// What `invite`'s `Require` and `Supported` headers say.
    pub fn of(invite: &Request) -> Rel100 {
        let lists = |name: HeaderName| {
            invite.headers().iter().any(|h| {
                h.is(&name)
                    && h.elements()
                        .iter()
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"100rel"))
            })
        };
        if lists(HeaderName::Require) {
            Rel100::Required
        } else if lists(HeaderName::Supported) {
            Rel100::Supported
        } else {
            Rel100::Unsupported
        }
    }
}

/// Why a provisional response may not go as asked ([`Callee::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressError {
    /// Reliably asked for, and the INVITE does not support 100rel.
    Unsupported,
    /// A reliable provisional response still awaits its PRACK.
    PrackPending,
}

/// The callee's side of one initial INVITE (see the module documentation).
#[derive(Debug, Clone)]
pub struct Callee {
    rel100: Rel100,
    /// A reliable provisional response awaits its PRACK.
    prack_awaited: bool,
}

impl Callee {
    /// An INVITE that says `rel100` of reliable provisional responses.
    pub fn new(rel100: Rel100) -> Callee {
        Callee {
            rel100,
            prack_awaited: false,
        }
    }

    /// What the INVITE said of 100rel.
    pub fn rel100(&self) -> Rel100 {
        self.rel100
    }

    /// A provisional response `status` (101–199) is asked for, reliably when `reliably`:
    /// whether it goes reliably, or why it may not go. Once it went reliably, call
    /// [`Callee::sent_reliably`].
    pub fn progress(&self, status: u16, reliably: bool) -> Result<bool, ProgressError> {
        let reliable = (reliably || self.rel100 == Rel100::Required) && status > 100;
        if !reliable {
            return Ok(false);
        }
        if self.rel100 == Rel100::Unsupported {
            return Err(ProgressError::Unsupported);
        }
        if self.prack_awaited {
            return Err(ProgressError::PrackPending);
        }
        Ok(true)
    }

    /// A reliable provisional response went: its PRACK is awaited.
    pub fn sent_reliably(&mut self) {
        self.prack_awaited = true;
    }

    /// Whether a reliable provisional response awaits its PRACK.
    pub fn prack_awaited(&self) -> bool {
        self.prack_awaited
    }

    /// The PRACK came (or never will: its timer fired): whether one was awaited.
    pub fn handle_prack(&mut self) -> bool {
        std::mem::take(&mut self.prack_awaited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
             To: <sip:bob@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        match sipua_message::Message::parse(text.as_bytes()).unwrap() {
            sipua_message::Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_invite_says_whether_100rel_is_required_supported_or_neither() {
        assert_eq!(Rel100::of(&invite("Require: 100rel\r\n")), Rel100::Required);
        assert_eq!(
            Rel100::of(&invite("Supported: timer, 100REL\r\n")),
            Rel100::Supported
        );
        assert_eq!(
            Rel100::of(&invite("Supported: timer\r\nRequire: timer\r\n")),
            Rel100::Unsupported
        );
    }

    #[test]
    fn reliably_when_asked_or_required_one_at_a_time_never_unsupported() {
        let c = Callee::new(Rel100::Unsupported);
        assert_eq!(c.progress(180, false), Ok(false));
        assert_eq!(c.progress(183, true), Err(ProgressError::Unsupported));
        let mut c = Callee::new(Rel100::Required);
        assert_eq!(
            c.progress(100, false),
            Ok(false),
            "a 100 never goes reliably"
        );
        assert_eq!(c.progress(180, false), Ok(true), "required: always");
        c.sent_reliably();
        assert_eq!(c.progress(183, false), Err(ProgressError::PrackPending));
        assert!(c.handle_prack());
        assert!(!c.handle_prack(), "once");
        assert_eq!(c.progress(183, false), Ok(true));
        let c = Callee::new(Rel100::Supported);
        assert_eq!(
            (c.progress(180, false), c.progress(180, true)),
            (Ok(false), Ok(true))
        );
    }
}
