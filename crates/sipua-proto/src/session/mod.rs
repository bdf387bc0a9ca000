//! The INVITE session's own rules, with no I/O and no clock (RFC 3261 §13–§14, RFC 3264,
//! RFC 6337, RFC 3262 §5, RFC 3311 §5).
//!
//! - [`negotiation`]: which offer/answer exchange is under way in a session and which
//!   message may carry what next, as one explicit state ([`OfferAnswer`]), so that an
//!   answer in the wrong message, two offers at once or a glare are told apart by the
//!   machine instead of by flags scattered over the caller.
//! - [`lifecycle`]: where the session is ([`SessionState`]) and what its clock, the ACK and
//!   the CANCEL ask for: the callee's 480/487 when unanswered, a BYE held until the ACK of
//!   our 2xx, a caller's CANCEL once and only before the answer, and the session timer,
//!   as `handle_*`/`poll_*` like the rest of the core.
//! - [`media`]: what the session asks of its media handler ([`Media`], holding the
//!   [`Negotiation`]): apply the peer's offer or answer, make ours, repeat the one a 1xx
//!   carried, roll back a failed exchange, the dialog is confirmed, as [`media::Ask`]s drained
//!   with `poll_ask`, so that the driver only does what it is asked.
//! - [`reoffer`]: our re-INVITEs and UPDATEs after the first exchange ([`Reoffers`]): one
//!   at a time (the one "request pending" rule for re-INVITE, UPDATE and the session
//!   timer's refresh), held for the ACK that answers our 2xx's offer, and a refused one
//!   sent again after the back-off (RFC 3261 §14.1, RFC 3311 §5.1).
//! - [`callee`]: the callee's side of the initial INVITE ([`Callee`]): which provisional
//!   responses go reliably (RFC 3262 §3: asked for, or required by the INVITE; never when
//!   it does not support 100rel), one at a time until its PRACK, and the INVITE's offer
//!   taken once.
//! - [`caller`]: what each response to the caller's initial INVITE means ([`Caller`]):
//!   early media, the one resend after a 422 (RFC 4028 §7.4), the 2xx that confirms and
//!   what its body is, a later fork's 2xx to acknowledge and end (RFC 3261 §13.2.2.4), a 2xx
//!   that crossed our CANCEL.
//! - [`transfer`]: our REFERs' implicit subscriptions ([`transfer::Refers`]): which REFER
//!   a NOTIFY reports on (by its Event `id`, RFC 3515 §2.4.6), when one ends, 481 for a
//!   NOTIFY of none, and a bound on how many are followed.
//! - [`backoff`]: how long a re-offer refused with 491 or 500 waits before it goes again
//!   (RFC 3261 §14.1, §14.2).
//! - [`timer`]: session timers (RFC 4028): what a caller asks for, what a callee decides
//!   (422 or the interval and the refresher), and when a running timer is due.
//!
//! - [`machine`]: the three that every session runs, lifecycle, media and re-offers, as one
//!   [`Session`] with one clock and one queue of events, and the decisions that need more
//!   than one of them (a re-offer held for the ACK or ended with the session, the refresh
//!   put off while an exchange is open, 491 or 500 for a peer's offer that cannot be taken).
//!
//! The async `sipua` crate's session task drives these: it holds one [`Session`], tells it
//! what it sends and receives, and does what it asks of the handler and the network.

pub mod backoff;
pub mod callee;
pub mod caller;
pub mod lifecycle;
pub mod machine;
pub mod media;
pub mod negotiation;
pub mod reoffer;
pub mod timer;
pub mod transfer;

pub use callee::Callee;
pub use caller::Caller;
pub use lifecycle::{Lifecycle, SessionState};
pub use machine::Session;
pub use media::Media;
pub use negotiation::{Message, Negotiation, OfferAnswer, OfferAnswerError, Received};
pub use reoffer::Reoffers;
