//! The four transaction state machines of RFC 3261 §17, with the RFC 6026 changes (the
//! Accepted state of INVITE transactions, Timers L and M).
//!
//! Each machine is a plain struct: feed it what arrives (`on_response`, `on_request`,
//! `on_timeout`, `on_transport_error`) with the current time; it pushes [`Output`]s (bytes to
//! send, a timeout or transport error to report) and says whether a message goes up to the
//! transaction user. [`next_deadline`](ClientNonInvite::next_deadline) tells the driver when to
//! call `on_timeout` next. Retransmissions happen only over unreliable transports.

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;

pub use client_invite::ClientInvite;
pub use client_non_invite::ClientNonInvite;
pub use server_invite::ServerInvite;
pub use server_non_invite::ServerNonInvite;

use std::time::{Duration, Instant};

use bytes::Bytes;

/// The timer values of RFC 3261 §17.1.1.1 and table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1: the round-trip estimate (default 500 ms).
    pub t1: Duration,
    /// T2: the longest retransmit interval for non-INVITE requests and INVITE responses
    /// (default 4 s).
    pub t2: Duration,
    /// T4: how long a message may stay in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Whether the transport retransmits for us (TCP, TLS, WS) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// UDP: the transaction retransmits and waits for stray retransmissions.
    Unreliable,
    /// TCP, TLS, SCTP, WS, WSS: no retransmissions, no wait states.
    Reliable,
}

/// What a transaction asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the transaction's peer (a request, a retransmission, an ACK, a
    /// response).
    Transmit(Bytes),
    /// The transaction timed out (Timer B, F or H): tell the transaction user.
    Timeout,
    /// The transport failed (RFC 3261 §17.1.4, §17.2.4): tell the transaction user.
    TransportError,
    /// A held-back 100 Trying is due (the TU has not answered in time, or the INVITE came
    /// again): the owner builds it from the request, sends it, and hands it back with
    /// `ServerInvite::set_trying`. Built only when needed, so an INVITE answered at once
    /// costs no 100 at all.
    Trying,
}

/// What to do with a message a transaction was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Pass it to the transaction user.
    Pass,
    /// The transaction absorbed it (a retransmission, or a message for a finished state).
    Absorb,
}

/// States shared by the four machines (each uses the ones RFC 3261 gives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Client INVITE: waiting for any response.
    Calling,
    /// Client non-INVITE, server non-INVITE: waiting.
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A final response was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE after a 2xx (RFC 6026): 2xx retransmissions and ACKs are the TU's business.
    Accepted,
    /// Server INVITE: the ACK for a non-2xx arrived.
    Confirmed,
    /// Done; the owner drops the transaction.
    Terminated,
}

/// A one-shot timer: its deadline while armed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timer(Option<Instant>);

impl Timer {
    pub(crate) fn arm(&mut self, at: Instant) {
        self.0 = Some(at);
    }
    pub(crate) fn stop(&mut self) {
        self.0 = None;
    }
    /// Whether the timer is armed and due; disarms it when it fires.
    pub(crate) fn fire(&mut self, now: Instant) -> bool {
        match self.0 {
            Some(at) if at <= now => {
                self.0 = None;
                true
            }
            _ => false,
        }
    }
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.0
    }
}

/// The earliest of several deadlines.
pub(crate) fn earliest(timers: &[Timer]) -> Option<Instant> {
    timers.iter().filter_map(Timer::deadline).min()
}

#[cfg(test)]
pub(crate) mod test_util {
    use sipua_message::{Message, Request, Response};

    pub fn invite() -> Request {
        request("INVITE")
    }

    pub fn request(method: &str) -> Request {
        let raw = format!(
            "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\nMax-Forwards: 70\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n\
             Call-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match Message::parse(raw.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    pub fn response(req: &Request, status: u16) -> Response {
        let mut r = Response::from_request(req, status);
        if status > 100 {
            r.set_to_tag("314159").unwrap();
        }
        r
    }
}
