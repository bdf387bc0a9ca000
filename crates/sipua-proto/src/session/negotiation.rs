//! The offer/answer state of one INVITE session (RFC 3264 §4, RFC 6337 §2, RFC 3261 §13.2.1
//! and §13.3.1, RFC 3262 §5, RFC 3311 §5).
//!
//! At any moment a session is in exactly one [`OfferAnswer`] state: stable, an offer of ours
//! awaiting its answer, an offer of the peer's awaiting ours, or an INVITE without an offer
//! whose offer is still owed by one side. Each offer remembers the [`Message`] that carried
//! it, because that decides where its answer may come (RFC 6337 §2.1):
//!
//! | offer in                       | answer in                     |
//! |--------------------------------|-------------------------------|
//! | INVITE (initial or re-INVITE)  | a 1xx to it, or its 2xx       |
//! | reliable 1xx (INVITE had none) | the PRACK                     |
//! | 2xx to INVITE (INVITE had none)| the ACK                       |
//! | PRACK                          | the PRACK's 2xx               |
//! | UPDATE                         | the UPDATE's 2xx              |
//!
//! A session body in an unreliable 1xx answers an INVITE's offer here, as SIP.js and most
//! phones treat early media (RFC 6337 §3.1 discusses the practice); in that case the 2xx
//! repeats it and is not a second answer.
//!
//! The machine only says what a body is and whether a body may be sent; applying it is the
//! caller's (the media handler's) business. A refused or failed exchange is rolled back to
//! stable (RFC 3264 §8: the previous session stays), since offers start only from stable.

/// A message that can carry a session description, as far as offer/answer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// An INVITE, the initial one or a re-INVITE.
    Invite,
    /// A provisional response (101–199) to an INVITE.
    Provisional {
        /// Sent reliably (RFC 3262): only then may it carry an offer.
        reliable: bool,
    },
    /// A 2xx to an INVITE.
    Success,
    /// The ACK of a 2xx.
    Ack,
    /// A PRACK (RFC 3262).
    Prack,
    /// A 2xx to a PRACK.
    PrackSuccess,
    /// An UPDATE (RFC 3311).
    Update,
    /// A 2xx to an UPDATE.
    UpdateSuccess,
}

impl Message {
    /// Every message, each once (for tests and tables that must cover them all).
    pub const ALL: [Message; 9] = [
        Message::Invite,
        Message::Provisional { reliable: false },
        Message::Provisional { reliable: true },
        Message::Success,
        Message::Ack,
        Message::Prack,
        Message::PrackSuccess,
        Message::Update,
        Message::UpdateSuccess,
    ];

    /// Whether an offer carried in `self` is answered by a body in `answer` (RFC 6337 §2.1).
    pub fn answered_by(self, answer: Message) -> bool {
        use Message::*;
        matches!(
            (self, answer),
            (Invite, Provisional { .. } | Success)
                | (Provisional { reliable: true }, Prack)
                | (Success, Ack)
                | (Prack, PrackSuccess)
                | (Update, UpdateSuccess)
        )
    }

    /// Whether `self` is a request that may open an exchange of its own on a stable
    /// session: an INVITE, an UPDATE or a PRACK.
    fn opens(self) -> bool {
        matches!(self, Message::Invite | Message::Update | Message::Prack)
    }
}

/// Where a session's offer/answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfferAnswer {
    /// No exchange is under way: either side may offer (in an INVITE, UPDATE or PRACK).
    Stable,
    /// We sent an offer in this message; its answer is awaited.
    LocalOffer(Message),
    /// The peer's offer came in this message; our answer is owed.
    RemoteOffer(Message),
    /// We sent an INVITE without an offer: the peer's offer comes in a reliable 1xx or the
    /// 2xx (RFC 3261 §13.2.1).
    AwaitingOffer,
    /// An INVITE without an offer came: our offer goes in a reliable 1xx or the 2xx
    /// (RFC 3261 §13.3.1).
    OweOffer,
}

/// What a body that arrived is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// An offer: the caller owes an answer (or a refusal and [`Negotiation::rollback`]).
    Offer,
    /// The answer to our offer: the exchange is complete.
    Answer,
    /// The same description again, in the 2xx (or a later 1xx) of an INVITE whose exchange
    /// an earlier 1xx completed: nothing to apply.
    Repeat,
}

/// Why a body may not be sent or taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferAnswerError {
    /// Both sides offered at once (RFC 3261 §14.2, RFC 3311 §5.2): refuse the peer's
    /// request with 491; our own offer stands.
    Glare,
    /// An offer arrived while the peer's previous one still waits for our answer (RFC 3311
    /// §5.2): refuse it with 500 and a Retry-After; or we tried to offer while an exchange
    /// is under way (the API's "request pending").
    Pending,
    /// The message may not carry a session description in this state (an answer where
    /// none is awaited, an offer in a response while an exchange is under way, a body in
    /// an ACK that owes nothing). The body is to be ignored, the state is unchanged.
    Unexpected,
    /// A 2xx or an ACK without the session description it owes: the answer to our offer,
    /// or the offer our INVITE without one asked for (RFC 3261 §13.2.1, §13.3.1). The
    /// exchange is rolled back.
    Missing,
}

impl std::fmt::Display for OfferAnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OfferAnswerError::Glare => "both sides offered at once (glare)",
            OfferAnswerError::Pending => "an offer/answer exchange is already under way",
            OfferAnswerError::Unexpected => "a session description this message may not carry",
            OfferAnswerError::Missing => "a session description this message owes is missing",
        })
    }
}

impl std::error::Error for OfferAnswerError {}

/// The offer/answer machine of one session: feed it what is sent and received, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation {
    state: OfferAnswer,
    /// Exchanges completed so far (an offer and its answer).
    exchanges: u32,
}

impl Default for Negotiation {
    fn default() -> Self {
        Negotiation::new()
    }
}

impl Negotiation {
    /// A session before its INVITE: stable, nothing exchanged.
    pub fn new() -> Negotiation {
        Negotiation {
            state: OfferAnswer::Stable,
            exchanges: 0,
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> OfferAnswer {
        self.state
    }

    /// How many exchanges (offer and answer) have completed.
    pub fn exchanges(&self) -> u32 {
        self.exchanges
    }

    /// Whether an offer of ours awaits its answer.
    pub fn offer_pending(&self) -> bool {
        matches!(self.state, OfferAnswer::LocalOffer(_))
    }

    /// Whether we may open an exchange now (a re-INVITE, an UPDATE).
    pub fn can_offer(&self) -> bool {
        self.state == OfferAnswer::Stable
    }

    /// We send an INVITE (or re-INVITE) without an offer: the peer owes one.
    pub fn send_invite_without_offer(&mut self) -> Result<(), OfferAnswerError> {
        match self.state {
            OfferAnswer::Stable => {
                self.state = OfferAnswer::AwaitingOffer;
                Ok(())
            }
            _ => Err(OfferAnswerError::Pending),
        }
    }

    /// An INVITE (or re-INVITE) without an offer arrived: we owe one.
    pub fn receive_invite_without_offer(&mut self) -> Result<(), OfferAnswerError> {
        match self.state {
            OfferAnswer::Stable => {
                self.state = OfferAnswer::OweOffer;
                Ok(())
            }
            OfferAnswer::LocalOffer(_) | OfferAnswer::AwaitingOffer => Err(OfferAnswerError::Glare),
            OfferAnswer::RemoteOffer(_) | OfferAnswer::OweOffer => Err(OfferAnswerError::Pending),
        }
    }

    /// We send an offer in `m`.
    pub fn send_offer(&mut self, m: Message) -> Result<(), OfferAnswerError> {
        let allowed = match (self.state, m) {
            (OfferAnswer::Stable, m) => m.opens(),
            (OfferAnswer::OweOffer, Message::Provisional { reliable: true } | Message::Success) => {
                true
            }
            (OfferAnswer::OweOffer, _) => false,
            _ => return Err(OfferAnswerError::Pending),
        };
        if !allowed {
            return Err(OfferAnswerError::Unexpected);
        }
        self.state = OfferAnswer::LocalOffer(m);
        Ok(())
    }

    /// We send our answer in `m`.
    pub fn send_answer(&mut self, m: Message) -> Result<(), OfferAnswerError> {
        match self.state {
            OfferAnswer::RemoteOffer(offer) if offer.answered_by(m) => {
                self.state = OfferAnswer::Stable;
                self.exchanges = self.exchanges.saturating_add(1);
                Ok(())
            }
            _ => Err(OfferAnswerError::Unexpected),
        }
    }

    /// A session description arrived in `m`: what it is. An offer or an answer moves the
    /// state; an error leaves it as it was.
    pub fn receive(&mut self, m: Message) -> Result<Received, OfferAnswerError> {
        use OfferAnswer::*;
        let (next, what) = match (self.state, m) {
            (LocalOffer(offer), m) if offer.answered_by(m) => (Stable, Received::Answer),
            (LocalOffer(_) | OweOffer, Message::Invite | Message::Update) => {
                return Err(OfferAnswerError::Glare)
            }
            (RemoteOffer(_) | AwaitingOffer, Message::Invite | Message::Update) => {
                return Err(OfferAnswerError::Pending)
            }
            (Stable, m) if m.opens() => (RemoteOffer(m), Received::Offer),
            (AwaitingOffer, Message::Provisional { reliable: true } | Message::Success) => {
                (RemoteOffer(m), Received::Offer)
            }
            // the 2xx, or a later 1xx, of an INVITE whose exchange a 1xx completed (a
            // response is never an offer once one was answered)
            (_, Message::Success | Message::Provisional { .. }) if self.exchanges > 0 => {
                return Ok(Received::Repeat)
            }
            _ => return Err(OfferAnswerError::Unexpected),
        };
        if what == Received::Answer {
            self.exchanges = self.exchanges.saturating_add(1);
        }
        self.state = next;
        Ok(what)
    }

    /// Puts the machine back where a run of media asks began ([`Media::failed`](super::Media::failed)).
    pub(super) fn restore(&mut self, state: OfferAnswer, exchanges: u32) {
        self.state = state;
        self.exchanges = exchanges;
    }

    /// The exchange under way failed (our offer refused, its request lost, the peer's offer
    /// refused by us, an owed offer that never came): back to stable, the previous session
    /// unchanged (RFC 3264 §8, RFC 3311 §5.1).
    pub fn rollback(&mut self) {
        self.state = OfferAnswer::Stable;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Message::*;

    #[test]
    fn an_offer_in_the_invite_is_answered_in_the_2xx() {
        let (mut a, mut b) = (Negotiation::new(), Negotiation::new());
        a.send_offer(Invite).unwrap();
        assert_eq!(b.receive(Invite), Ok(Received::Offer));
        b.send_answer(Success).unwrap();
        assert_eq!(a.receive(Success), Ok(Received::Answer));
        assert_eq!(
            (a.state(), b.state()),
            (OfferAnswer::Stable, OfferAnswer::Stable)
        );
        assert_eq!((a.exchanges(), b.exchanges()), (1, 1));
        // nothing is owed in the ACK
        assert_eq!(b.receive(Ack), Err(OfferAnswerError::Unexpected));
    }

    #[test]
    fn an_invite_without_offer_gets_it_in_the_2xx_and_answers_in_the_ack() {
        let (mut a, mut b) = (Negotiation::new(), Negotiation::new());
        a.send_invite_without_offer().unwrap();
        b.receive_invite_without_offer().unwrap();
        // the callee may not answer what was never offered
        assert_eq!(b.send_answer(Success), Err(OfferAnswerError::Unexpected));
        b.send_offer(Success).unwrap();
        assert_eq!(a.receive(Success), Ok(Received::Offer));
        a.send_answer(Ack).unwrap();
        assert_eq!(b.receive(Ack), Ok(Received::Answer));
        assert_eq!((a.exchanges(), b.exchanges()), (1, 1));
    }

    #[test]
    fn an_offer_in_a_reliable_1xx_is_answered_in_the_prack_and_the_2xx_repeats() {
        let (mut a, mut b) = (Negotiation::new(), Negotiation::new());
        a.send_invite_without_offer().unwrap();
        b.receive_invite_without_offer().unwrap();
        // an unreliable 1xx cannot carry the offer
        assert_eq!(
            b.send_offer(Provisional { reliable: false }),
            Err(OfferAnswerError::Unexpected)
        );
        b.send_offer(Provisional { reliable: true }).unwrap();
        assert_eq!(
            a.receive(Provisional { reliable: true }),
            Ok(Received::Offer)
        );
        a.send_answer(Prack).unwrap();
        assert_eq!(b.receive(Prack), Ok(Received::Answer));
        assert_eq!(a.receive(Success), Ok(Received::Repeat));
        assert_eq!(a.state(), OfferAnswer::Stable);
    }

    #[test]
    fn early_media_in_a_1xx_answers_and_an_update_may_follow() {
        let (mut a, mut b) = (Negotiation::new(), Negotiation::new());
        a.send_offer(Invite).unwrap();
        b.receive(Invite).unwrap();
        b.send_answer(Provisional { reliable: false }).unwrap();
        assert_eq!(
            a.receive(Provisional { reliable: false }),
            Ok(Received::Answer)
        );
        a.send_offer(Update).unwrap();
        assert_eq!(b.receive(Update), Ok(Received::Offer));
        b.send_answer(UpdateSuccess).unwrap();
        assert_eq!(a.receive(UpdateSuccess), Ok(Received::Answer));
        assert_eq!(a.receive(Success), Ok(Received::Repeat));
        assert_eq!((a.exchanges(), b.exchanges()), (2, 2));
    }

    #[test]
    fn crossing_offers_are_glare_and_a_second_offer_is_pending() {
        let (mut a, mut b) = (Negotiation::new(), Negotiation::new());
        a.send_offer(Invite).unwrap();
        b.receive(Invite).unwrap();
        b.send_answer(Success).unwrap();
        a.receive(Success).unwrap();
        a.send_offer(Update).unwrap();
        b.send_offer(Invite).unwrap();
        assert_eq!(a.receive(Invite), Err(OfferAnswerError::Glare));
        assert_eq!(b.receive(Update), Err(OfferAnswerError::Glare));
        // both refused with 491: both roll back
        a.rollback();
        b.rollback();
        assert!(a.can_offer() && b.can_offer());
        // an offer while the peer's is unanswered: 500
        a.send_offer(Update).unwrap();
        assert_eq!(b.receive(Update), Ok(Received::Offer));
        assert_eq!(b.receive(Update), Err(OfferAnswerError::Pending));
        // and we cannot offer either until we answered
        assert_eq!(b.send_offer(Update), Err(OfferAnswerError::Pending));
    }

    #[test]
    fn an_answer_in_the_wrong_message_is_refused_and_changes_nothing() {
        let mut a = Negotiation::new();
        a.send_offer(Invite).unwrap();
        a.receive(Invite).unwrap_err();
        a.receive(Invite).unwrap_err();
        for wrong in [Ack, Prack, PrackSuccess, UpdateSuccess] {
            assert_eq!(a.receive(wrong), Err(OfferAnswerError::Unexpected));
        }
        assert_eq!(a.state(), OfferAnswer::LocalOffer(Invite));
        let mut u = Negotiation::new();
        u.send_offer(Update).unwrap();
        assert_eq!(u.receive(Success), Err(OfferAnswerError::Unexpected));
        assert_eq!(u.receive(UpdateSuccess), Ok(Received::Answer));
    }
}
