//! # sipua-proto
//!
//! The sans-IO core of sipua (RFC 3261 §8, §12, §17, §22): transactions, dialogs, the UA core
//! and digest authentication as plain state machines driven by `handle_*(now, input)` and
//! drained with `poll_*()`. Nothing here reads a clock, opens a socket or spawns a task: time
//! is an argument, output is data.
//!
//! Where each part lives, from the wire up:
//! - [`transaction`]: the four transaction machines of RFC 3261 §17, with RFC 6026's
//!   Accepted state;
//! - [`endpoint`]: owns the transactions, matches what arrives to them (§17.1.3, §17.2.3),
//!   answers what none should see (unmatched CANCEL, malformed requests, overload) and routes
//!   responses (§18.2.2, RFC 3581); a new INVITE it refuses in overload is answered from the
//!   raw datagram, before the parser (`shed.rs`, §21.5.4), and clients that ask for RFC 7339
//!   overload control read the share of their traffic to cut in its responses' Via (`oc.rs`);
//! - [`dialog`]: dialogs and their route sets (§12), with the flow a dialog came over
//!   (RFC 5626, RFC 7118);
//! - [`ua`]: the user-agent core on top (§8, §12, §13, §15): tags, 2xx retransmission and
//!   ACK (§13.3.1.4, §13.2.2.4), in-dialog checks, PRACK (RFC 3262), Replaces (RFC 3891),
//!   SUBSCRIBE/NOTIFY dialogs (RFC 6665);
//! - [`auth`]: digest authentication, client and server side (RFC 8760: MD5 and SHA-256);
//! - [`locate`]: where a request goes and RFC 3263 server location, DNS answers as input;
//! - [`session`]: the INVITE session's own rules, as machines split by concern: its
//!   lifecycle (the state SIP.js calls `SessionState`, the callee's 480/487 deadlines, a BYE
//!   held for the ACK, the caller's CANCEL and the session timer: RFC 3261 §9.1, §13.3.1,
//!   §15, RFC 4028), its offer/answer state (RFC 3264, RFC 6337, RFC 3262 §5, RFC 3311 §5),
//!   the caller's responses (forks, early media, the 422 resend: RFC 3261 §13.2.2, RFC 4028
//!   §7.4), the callee's reliable provisional responses (RFC 3262 §3), our re-offers (one
//!   re-INVITE or UPDATE at a time, the glare retry: RFC 3261 §14.1, RFC 3311 §5.1) and our
//!   REFERs' subscriptions (RFC 3515 §2.4).
//!
//! What is left of the INVITE session in the async `sipua` crate's session task is the
//! order of its steps: its handles, the media handler's calls (awaited in place, not yet
//! asked for through events), and sending what the machines allow. It pumps the lifecycle
//! and re-offer machines (one timer at the sooner `poll_timeout`, the events of
//! `poll_event`) and asks the others what each response, body or request means.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod dialog;
pub mod endpoint;
#[doc(hidden)] // shared with the other sipua crates, not part of the API
pub mod hash;
pub mod locate;
pub(crate) mod oc;
#[doc(hidden)] // shared with the other sipua crates, not part of the API
pub mod rng;
pub mod session;
mod shed;
#[cfg(any(test, feature = "test-util"))]
pub mod sim;
mod timers;
pub mod transaction;
pub mod ua;

pub use sipua_message as message;
