//! What an INVITE session asks of its media handler, and when (RFC 3264 §4–§8, RFC 6337 §2–§3,
//! RFC 3261 §13.2.1, §13.3.1, §14, RFC 3262 §5, RFC 3311 §5).
//!
//! [`Media`] holds the session's offer/answer state ([`Negotiation`]) and turns what the
//! session sends and receives into [`Ask`]s for the media handler, drained in order with
//! [`Media::poll_ask`]: apply the peer's offer or answer, make our description, repeat the
//! one made last, roll back, the dialog is confirmed. The session's driver does what it is
//! asked and nothing else; it never reads the negotiation to decide what the handler does.
//!
//! - **Sending.** A request that offers asks for [`Media::offer`]; a response (or the ACK)
//!   asks [`Media::respond`] whether it carries a description, and which: the answer to the
//!   peer's offer (the callee's INVITE's offer is applied then, the first time a response
//!   needs it), the offer an INVITE without one is owed, or, while the callee's initial
//!   INVITE is unanswered, the description a 1xx already carried (RFC 6337 §3.1). What was
//!   made counts once the message went ([`Media::sent`]); a message that did not go takes
//!   its description back ([`Media::not_sent`]).
//! - **Receiving.** [`Media::received`] says what a body is and asks for it to be applied; a
//!   body the state does not allow is an error and asks nothing (refuse the request with 491
//!   or 500, or ignore the body); an answer that a 2xx or an ACK owes and lacks is
//!   [`OfferAnswerError::Missing`], and rolls back.
//! - **Failing.** When the handler fails one ask, [`Media::failed`] returns the negotiation
//!   to where the run of asks began (an answer a 1xx carried that could not be applied
//!   leaves the offer open for the 2xx's), and asks for a roll-back when an ask of the run
//!   had already changed the handler (RFC 3264 §8: the previous session stays). A run is
//!   what was queued since the driver last drained the queue: a driver that takes the
//!   peer's offer and asks for its answer before draining returns, when the answer fails, to
//!   before the offer (the session task does this); one that drains between the two returns
//!   to the offer applied, and rolls back itself.
//! - **Refusals.** [`Media::rollback`] ends the exchange under way (we refuse the peer's
//!   offer, or ours is refused); [`Media::refused`] ends only the one our request opened.
//!
//! The queue holds at most three asks: no run queues more than two (an offer to apply and
//! the answer to make), and the driver drains it before the next.

use super::negotiation::{Message, Negotiation, OfferAnswer, OfferAnswerError, Received};

/// One thing the media handler is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Apply the peer's offer, which came in this message (our answer is asked for next).
    ApplyOffer(Message),
    /// Apply the peer's answer to our offer, which came in this message.
    ApplyAnswer(Message),
    /// Make our description for this message: our offer, or our answer to the offer just
    /// applied (the handler knows which, as SIP.js's `getDescription` does).
    Describe(Message),
    /// Send the description made last again in this message (a response to the callee's
    /// initial INVITE repeating what a 1xx carried).
    Repeat(Message),
    /// Forget the exchange under way: the session stays as it was before it (RFC 3264 §8).
    Rollback,
    /// The dialog is confirmed (our 2xx acknowledged, or the peer's acknowledged by us):
    /// media may go to the peer.
    Confirmed,
}

impl Ask {
    /// Whether doing it changes what the handler holds, so that a later failure of the same
    /// run has to roll it back.
    fn changes_handler(self) -> bool {
        matches!(self, Ask::ApplyOffer(_) | Ask::Describe(_))
    }
}

/// The asks a run queues, at most.
const QUEUE: usize = 3;

/// What [`Media::failed`] returns to: the state and flags where the run began (the exchange
/// count is the run's less one if it took an answer, [`COUNTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Saved {
    state: OfferAnswer,
    flags: u8,
}

/// The peer's offer the negotiation holds has not been given to the handler: the callee's
/// INVITE's, applied when the first response that answers it is made.
const UNAPPLIED: u8 = 1;
/// The callee's initial INVITE awaits its 2xx: every response to it carries a description,
/// and what one made is kept for the next to repeat.
const ANSWERING: u8 = 2;
/// A response to the callee's initial INVITE carried a description: later ones repeat it.
const KEPT: u8 = 4;
/// The run under way: an ask that changed the handler was done.
const CHANGED: u8 = 8;
/// The run under way: it took an answer, which completed an exchange.
const COUNTED: u8 = 16;
/// The flags that belong to a run, not to the session.
const RUN: u8 = CHANGED | COUNTED;

/// The session's offer/answer state and what it asks of the media handler (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    oa: Negotiation,
    asks: [Option<Ask>; QUEUE],
    /// The ask handed out last, until the next poll says it was done.
    current: Option<Ask>,
    /// Where the run of asks under way began.
    before: Option<Saved>,
    /// [`UNAPPLIED`], [`ANSWERING`], [`KEPT`], and the run's [`CHANGED`] and [`COUNTED`]
    /// (one byte: every call holds one of these for its whole life).
    flags: u8,
}

impl Default for Media {
    fn default() -> Self {
        Media::new()
    }
}

impl Media {
    /// A caller's session before its INVITE: stable, nothing asked.
    pub fn new() -> Media {
        Media {
            oa: Negotiation::new(),
            asks: [None; QUEUE],
            current: None,
            before: None,
            flags: 0,
        }
    }

    /// A callee's session for an INVITE that `offers` or not. Its offer is applied when the
    /// first response that answers it is made ([`Media::respond`]), not before: a call
    /// rejected unanswered never touches the handler.
    pub fn callee(offers: bool) -> Media {
        let mut m = Media::new();
        m.flags = ANSWERING;
        if offers {
            let _ = m.oa.receive(Message::Invite);
            m.flags |= UNAPPLIED;
        } else {
            let _ = m.oa.receive_invite_without_offer();
        }
        m
    }

    /// The offer/answer state.
    pub fn negotiation(&self) -> &Negotiation {
        &self.oa
    }

    /// Where the offer/answer stands.
    pub fn state(&self) -> OfferAnswer {
        self.oa.state()
    }

    /// Whether we may open an exchange now (a re-INVITE, an UPDATE with an offer).
    pub fn can_offer(&self) -> bool {
        self.oa.can_offer()
    }

    /// Whether a description made now is kept for later responses to repeat (the callee's
    /// initial INVITE is unanswered): the driver keeps what [`Ask::Describe`] made, for
    /// [`Ask::Repeat`].
    pub fn keeps_descriptions(&self) -> bool {
        self.flags & ANSWERING != 0
    }

    /// Whether asks are queued or one is under way.
    pub fn busy(&self) -> bool {
        self.current.is_some() || self.asks[0].is_some()
    }

    /// The next thing to ask of the handler. Asking for the next means the one before was
    /// done; a run ends with `None`.
    pub fn poll_ask(&mut self) -> Option<Ask> {
        if let Some(done) = self.current.take() {
            if done.changes_handler() {
                self.flags |= CHANGED;
            }
        }
        let next = self.asks[0].take();
        self.asks.rotate_left(1);
        match next {
            Some(a) => self.current = Some(a),
            None => {
                self.before = None;
                self.flags &= !RUN;
            }
        }
        next
    }

    /// The ask handed out last failed: the run's other asks are dropped, the negotiation
    /// returns to where the run began, and a roll-back is asked when an ask of the run had
    /// already changed the handler. The driver goes on polling (for that roll-back).
    pub fn failed(&mut self) {
        self.current = None;
        self.asks = [None; QUEUE];
        let run = self.flags;
        self.flags &= !RUN;
        if let Some(s) = self.before.take() {
            let exchanges = self.oa.exchanges() - u32::from(run & COUNTED != 0);
            self.oa.restore(s.state, exchanges);
            self.flags = s.flags & !RUN;
        }
        if run & CHANGED != 0 {
            self.push(Ask::Rollback);
        }
    }

    /// We are to send an offer in request `m` (an INVITE, re-INVITE or UPDATE): asks for it.
    /// [`OfferAnswerError::Pending`] while an exchange is under way.
    pub fn offer(&mut self, m: Message) -> Result<(), OfferAnswerError> {
        if !self.oa.can_offer() {
            return Err(OfferAnswerError::Pending);
        }
        if !matches!(m, Message::Invite | Message::Update) {
            return Err(OfferAnswerError::Unexpected);
        }
        self.begin();
        self.push(Ask::Describe(m));
        Ok(())
    }

    /// We are to send response (or ACK) `m`: asks for the description it carries, if any,
    /// and says whether it carries one. The answer to the peer's offer when `m` may carry it
    /// (after applying the callee's INVITE's offer, the first time); while the callee's
    /// initial INVITE is unanswered, the description a 1xx carried again, else a new one;
    /// the offer a re-INVITE without one is owed in its 2xx. Nothing for an UPDATE's 2xx
    /// that answers no offer (a refresh).
    pub fn respond(&mut self, m: Message) -> bool {
        use OfferAnswer::*;
        let initial_response = matches!(m, Message::Provisional { .. } | Message::Success);
        let ask = match self.oa.state() {
            RemoteOffer(offer) if offer.answered_by(m) => {
                self.begin();
                if self.flags & UNAPPLIED != 0 {
                    self.flags &= !UNAPPLIED;
                    self.push(Ask::ApplyOffer(offer));
                }
                Ask::Describe(m)
            }
            _ if self.flags & KEPT != 0 && initial_response => Ask::Repeat(m),
            OweOffer if initial_response => Ask::Describe(m),
            _ if self.flags & ANSWERING != 0 && initial_response => Ask::Describe(m),
            _ => return false,
        };
        self.begin();
        self.push(ask);
        true
    }

    /// Message `m` went out, carrying a description (`body`) or not: what it offered or
    /// answered counts now. An unreliable 1xx cannot carry the offer an INVITE without one
    /// is owed: it stays owed. The callee's 2xx ends the repeats.
    pub fn sent(&mut self, m: Message, body: bool) {
        use OfferAnswer::*;
        if body {
            let _ = match self.oa.state() {
                RemoteOffer(offer) if offer.answered_by(m) => self.oa.send_answer(m),
                OweOffer => self.oa.send_offer(m),
                Stable if matches!(m, Message::Invite | Message::Update) => self.oa.send_offer(m),
                // our offer went in a reliable 1xx and its PRACK did not answer (a caller whose
                // core PRACKs at once, sipua's own among them): the 2xx carries it again, and
                // the ACK may answer it (RFC 3261 §13.3.1)
                LocalOffer(Message::Provisional { reliable: true }) if m == Message::Success => {
                    let exchanges = self.oa.exchanges();
                    self.oa.restore(LocalOffer(Message::Success), exchanges);
                    Ok(())
                }
                _ => Ok(()),
            };
        } else if m == Message::Invite {
            let _ = self.oa.send_invite_without_offer();
        }
        if self.flags & ANSWERING != 0 {
            match m {
                // the callee's 2xx ends the repeats
                Message::Success => self.flags &= !(ANSWERING | KEPT),
                Message::Provisional { .. } if body => self.flags |= KEPT,
                _ => {}
            }
        }
    }

    /// The message that was to carry the description just made did not go: the handler
    /// takes it back, and the exchange it belonged to ends (RFC 3264 §8).
    pub fn not_sent(&mut self) {
        self.begin();
        self.oa.rollback();
        self.push(Ask::Rollback);
    }

    /// A message `m` arrived, with a session description (`body`) or without: what the body
    /// is, asking for it to be applied (`None` without one). An error asks nothing and
    /// changes nothing, except [`OfferAnswerError::Missing`] (a 2xx or ACK without the answer
    /// or offer it owes), which rolls the exchange back. An offer in a PRACK is not taken:
    /// its 2xx goes without an answer ([`OfferAnswerError::Unexpected`]).
    pub fn received(
        &mut self,
        m: Message,
        body: bool,
    ) -> Result<Option<Received>, OfferAnswerError> {
        use OfferAnswer::*;
        if body {
            let before = self.oa;
            let what = self.oa.receive(m)?;
            if m == Message::Prack && what == Received::Offer {
                self.oa = before;
                return Err(OfferAnswerError::Unexpected);
            }
            let ask = match what {
                Received::Offer => Ask::ApplyOffer(m),
                Received::Answer => Ask::ApplyAnswer(m),
                Received::Repeat => return Ok(Some(what)),
            };
            self.save(before);
            if what == Received::Answer {
                self.flags |= COUNTED;
            }
            self.push(ask);
            return Ok(Some(what));
        }
        let owed = match (self.oa.state(), m) {
            (_, Message::Invite) => {
                // the run that makes our offer begins here: a failure returns to stable
                let before = self.oa;
                self.oa.receive_invite_without_offer()?;
                self.save(before);
                return Ok(None);
            }
            (LocalOffer(offer), m) => {
                offer.answered_by(m)
                    && matches!(
                        m,
                        Message::Success
                            | Message::Ack
                            | Message::UpdateSuccess
                            | Message::PrackSuccess
                    )
            }
            (AwaitingOffer, Message::Success) => true,
            _ => false,
        };
        if owed {
            self.rollback();
            return Err(OfferAnswerError::Missing);
        }
        Ok(None)
    }

    /// The 2xx of another fork than the one whose 1xx answered our INVITE's offer: its answer
    /// replaces the early one (the media follows the dialog that won). Nothing moves in the
    /// negotiation, which that exchange already completed.
    pub fn replace_answer(&mut self, m: Message) {
        self.begin();
        self.push(Ask::ApplyAnswer(m));
    }

    /// The 2xx (`m`) of another fork than the one whose reliable 1xx offered and our PRACK
    /// answered (our INVITE made none): its own offer, taken as a new one to answer in the
    /// ACK (the media follows the dialog that won). [`OfferAnswerError::Pending`] unless
    /// stable (an exchange of the early dialog is still under way).
    pub fn replace_offer(&mut self, m: Message) -> Result<(), OfferAnswerError> {
        if self.oa.state() != OfferAnswer::Stable {
            return Err(OfferAnswerError::Pending);
        }
        self.begin();
        let exchanges = self.oa.exchanges();
        self.oa.restore(OfferAnswer::RemoteOffer(m), exchanges);
        self.push(Ask::ApplyOffer(m));
        Ok(())
    }

    /// The exchange under way failed or was refused, whichever side offered: back to stable,
    /// and the handler rolls back (RFC 3264 §8, RFC 3311 §5.1). Nothing when stable.
    pub fn rollback(&mut self) {
        if self.oa.state() != OfferAnswer::Stable {
            self.begin();
            self.oa.rollback();
            self.push(Ask::Rollback);
        }
    }

    /// Our request `m` (a re-INVITE or UPDATE) was refused or got no answer: the exchange it
    /// opened, if any, is rolled back.
    pub fn refused(&mut self, m: Message) {
        let opened = match self.oa.state() {
            OfferAnswer::LocalOffer(offer) => offer == m,
            OfferAnswer::AwaitingOffer => m == Message::Invite,
            _ => false,
        };
        if opened {
            self.rollback();
        }
    }

    /// The dialog is confirmed: asks the handler to let media go to the peer.
    pub fn confirm(&mut self) {
        self.begin();
        self.push(Ask::Confirmed);
    }

    /// Notes where a run begins, unless one is under way.
    fn begin(&mut self) {
        self.save(self.oa);
    }

    /// Like [`Media::begin`], for a state that was changed already.
    fn save(&mut self, oa: Negotiation) {
        if !self.busy() && self.before.is_none() {
            self.before = Some(Saved {
                state: oa.state(),
                flags: self.flags,
            });
        }
    }

    fn push(&mut self, ask: Ask) {
        // no run queues more than two and the driver drains between runs; were one ever to
        // overflow, the asks queued first are done and the newest is the one lost
        if let Some(slot) = self.asks.iter_mut().find(|s| s.is_none()) {
            *slot = Some(ask);
        } else {
            debug_assert!(false, "media asks overflowed: {:?} + {ask:?}", self.asks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Message::*;

    fn drain(m: &mut Media) -> Vec<Ask> {
        std::iter::from_fn(|| m.poll_ask()).collect()
    }

    #[test]
    fn a_callee_applies_the_invite_s_offer_once_then_repeats_the_early_answer() {
        let mut b = Media::callee(true);
        // rejected unanswered: the handler is never asked anything
        assert!(!b.busy());
        let p = Provisional { reliable: false };
        assert!(b.respond(p));
        assert_eq!(drain(&mut b), [Ask::ApplyOffer(Invite), Ask::Describe(p)]);
        b.sent(p, true);
        assert_eq!(b.state(), OfferAnswer::Stable);
        // the 2xx repeats the answer the 183 carried; then no more repeats
        assert!(b.respond(Success));
        assert_eq!(drain(&mut b), [Ask::Repeat(Success)]);
        b.sent(Success, true);
        assert!(!b.keeps_descriptions());
        assert!(!b.respond(UpdateSuccess));
    }

    #[test]
    fn a_failed_answer_leaves_the_invite_s_offer_to_apply_again() {
        let mut b = Media::callee(true);
        assert!(b.respond(Success));
        assert_eq!(b.poll_ask(), Some(Ask::ApplyOffer(Invite)));
        assert_eq!(b.poll_ask(), Some(Ask::Describe(Success)));
        b.failed();
        // the offer was applied: the handler rolls it back, and the next try applies it anew
        assert_eq!(drain(&mut b), [Ask::Rollback]);
        assert_eq!(b.state(), OfferAnswer::RemoteOffer(Invite));
        assert!(b.respond(Success));
        assert_eq!(
            drain(&mut b),
            [Ask::ApplyOffer(Invite), Ask::Describe(Success)]
        );
    }

    #[test]
    fn an_early_answer_that_fails_leaves_the_offer_open_for_the_2xx() {
        let mut a = Media::new();
        a.offer(Invite).unwrap();
        assert_eq!(drain(&mut a), [Ask::Describe(Invite)]);
        a.sent(Invite, true);
        let p = Provisional { reliable: false };
        assert_eq!(a.received(p, true), Ok(Some(Received::Answer)));
        assert_eq!(a.poll_ask(), Some(Ask::ApplyAnswer(p)));
        a.failed();
        assert_eq!(drain(&mut a), []);
        assert_eq!(a.state(), OfferAnswer::LocalOffer(Invite));
        assert_eq!(a.received(Success, true), Ok(Some(Received::Answer)));
        assert_eq!(drain(&mut a), [Ask::ApplyAnswer(Success)]);
        a.confirm();
        assert_eq!(drain(&mut a), [Ask::Confirmed]);
    }

    #[test]
    fn a_reinvite_s_offer_refused_by_the_handler_rolls_back_to_stable() {
        let mut b = Media::callee(true);
        b.respond(Success);
        drain(&mut b);
        b.sent(Success, true);
        assert_eq!(b.received(Invite, true), Ok(Some(Received::Offer)));
        assert!(b.respond(Success));
        assert_eq!(b.poll_ask(), Some(Ask::ApplyOffer(Invite)));
        b.failed();
        // the apply failed: nothing of the run changed the handler
        assert_eq!(drain(&mut b), []);
        assert!(b.can_offer());
        // a glare and a pending offer ask nothing
        b.offer(Update).unwrap();
        drain(&mut b);
        b.sent(Update, true);
        assert_eq!(b.received(Invite, true), Err(OfferAnswerError::Glare));
        assert!(!b.busy());
        b.refused(Update);
        assert_eq!(drain(&mut b), [Ask::Rollback]);
        assert!(b.can_offer());
    }

    #[test]
    fn a_missing_answer_rolls_back_and_an_offer_in_a_prack_is_not_taken() {
        // the callee's 2xx offered (INVITE without offer); the ACK has no answer
        let mut b = Media::callee(false);
        assert!(b.respond(Success));
        assert_eq!(drain(&mut b), [Ask::Describe(Success)]);
        b.sent(Success, true);
        assert_eq!(b.received(Ack, false), Err(OfferAnswerError::Missing));
        assert_eq!(drain(&mut b), [Ask::Rollback]);
        assert!(b.can_offer());
        let mut a = Media::new();
        a.sent(Invite, false);
        assert_eq!(a.received(Success, false), Err(OfferAnswerError::Missing));
        // an offer in a PRACK: not taken, nothing asked
        let mut c = Media::callee(false);
        assert_eq!(c.received(Prack, true), Err(OfferAnswerError::Unexpected));
        assert_eq!(c.state(), OfferAnswer::OweOffer);
        assert!(!c.busy());
    }

    #[test]
    fn an_offer_in_a_reliable_1xx_the_prack_left_unanswered_goes_again_in_the_2xx() {
        let mut b = Media::callee(false);
        let r = Provisional { reliable: true };
        assert!(b.respond(r));
        assert_eq!(drain(&mut b), [Ask::Describe(r)]);
        b.sent(r, true);
        assert_eq!(b.state(), OfferAnswer::LocalOffer(r));
        // the PRACK came without the answer
        assert_eq!(b.received(Prack, false), Ok(None));
        assert!(b.respond(Success));
        assert_eq!(drain(&mut b), [Ask::Repeat(Success)]);
        b.sent(Success, true);
        assert_eq!(b.state(), OfferAnswer::LocalOffer(Success));
        assert_eq!(b.received(Ack, true), Ok(Some(Received::Answer)));
        assert_eq!(drain(&mut b), [Ask::ApplyAnswer(Ack)]);
        assert_eq!(b.negotiation().exchanges(), 1);
    }

    #[test]
    fn another_fork_s_offer_after_a_prack_exchange_is_answered_in_the_ack() {
        let mut a = Media::new();
        a.sent(Invite, false);
        let r = Provisional { reliable: true };
        assert_eq!(a.received(r, true), Ok(Some(Received::Offer)));
        assert!(a.respond(Prack));
        assert_eq!(drain(&mut a), [Ask::ApplyOffer(r), Ask::Describe(Prack)]);
        a.sent(Prack, true);
        // the winning fork's 2xx: a repeat to the negotiation, its own offer to us
        assert_eq!(a.received(Success, true), Ok(Some(Received::Repeat)));
        a.replace_offer(Success).unwrap();
        assert!(a.respond(Ack));
        assert_eq!(
            drain(&mut a),
            [Ask::ApplyOffer(Success), Ask::Describe(Ack)]
        );
        a.sent(Ack, true);
        assert_eq!(a.state(), OfferAnswer::Stable);
        // not while an exchange is under way
        a.offer(Update).unwrap();
        drain(&mut a);
        a.sent(Update, true);
        assert_eq!(a.replace_offer(Success), Err(OfferAnswerError::Pending));
        assert!(!a.busy());
    }

    #[test]
    fn an_offer_that_did_not_go_is_taken_back() {
        let mut a = Media::new();
        a.offer(Invite).unwrap();
        assert_eq!(a.offer(Update), Ok(()));
        assert_eq!(
            drain(&mut a),
            [Ask::Describe(Invite), Ask::Describe(Update)]
        );
        a.not_sent();
        assert_eq!(drain(&mut a), [Ask::Rollback]);
        assert!(a.can_offer());
        a.sent(Invite, false);
        assert_eq!(a.offer(Update), Err(OfferAnswerError::Pending));
        assert_eq!(a.received(Success, true), Ok(Some(Received::Offer)));
        assert!(a.respond(Ack));
        assert_eq!(
            drain(&mut a),
            [Ask::ApplyOffer(Success), Ask::Describe(Ack)]
        );
        a.sent(Ack, true);
        assert_eq!(a.state(), OfferAnswer::Stable);
        assert_eq!(a.negotiation().exchanges(), 1);
    }
}
