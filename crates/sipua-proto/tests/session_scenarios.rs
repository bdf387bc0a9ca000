//! The offer/answer part of SIP.js's session scenarios (`test/spec/api/session.spec.ts`,
//! `session-in-dialog.spec.ts`, `core/user-agent-core.spec.ts`), run against the sans-IO
//! machine directly, with and without an offer in the INVITE as SIP.js runs them: which
//! message carries the offer, which the answer, what a failure leaves. No tokio, no network:
//! the whole file runs in microseconds. The same scenarios run as whole user agents over the
//! simulated network in `crates/sipua/tests/session.rs`.

use sipua_proto::session::{Message, Negotiation, OfferAnswer, OfferAnswerError, Received};
use Message::*;

/// Alice (the caller) and Bob, each with the machine of their side of one session.
struct Pair {
    alice: Negotiation,
    bob: Negotiation,
}

impl Pair {
    /// Alice has sent her INVITE, with an offer or without, and Bob has it.
    fn invited(with_offer: bool) -> Pair {
        let (mut alice, mut bob) = (Negotiation::new(), Negotiation::new());
        if with_offer {
            alice.send_offer(Invite).unwrap();
            assert_eq!(bob.receive(Invite), Ok(Received::Offer));
        } else {
            alice.send_invite_without_offer().unwrap();
            bob.receive_invite_without_offer().unwrap();
        }
        Pair { alice, bob }
    }

    /// Bob puts his description in `m` (a response to the INVITE): his answer, or his offer
    /// when the INVITE had none; Alice takes it.
    fn bob_describes(&mut self, m: Message) -> Received {
        if self.bob.send_answer(m).is_err() {
            self.bob.send_offer(m).unwrap();
        }
        self.alice.receive(m).unwrap()
    }

    /// Bob accepts: the 2xx, and the ACK (with Alice's answer when the 2xx offered).
    fn accepted(&mut self) {
        if self.bob_describes(Success) == Received::Offer {
            self.alice.send_answer(Ack).unwrap();
            assert_eq!(self.bob.receive(Ack), Ok(Received::Answer));
        }
        self.stable(1);
    }

    /// Both sides stable, with `n` exchanges done.
    fn stable(&self, n: u32) {
        assert_eq!(self.alice.state(), OfferAnswer::Stable);
        assert_eq!(self.bob.state(), OfferAnswer::Stable);
        assert_eq!((self.alice.exchanges(), self.bob.exchanges()), (n, n));
    }
}

#[test]
fn accept() {
    for with_offer in [true, false] {
        let mut p = Pair::invited(with_offer);
        p.accepted();
    }
}

#[test]
fn accept_twice_describes_nothing_new() {
    // the second accept() throws in SIP.js; here a second 2xx body is only a repeat
    let mut p = Pair::invited(true);
    p.accepted();
    assert_eq!(p.alice.receive(Success), Ok(Received::Repeat));
    assert_eq!(
        p.bob.send_answer(Success),
        Err(OfferAnswerError::Unexpected)
    );
}

#[test]
fn progress_183_then_accept_with_early_media() {
    // with an offer: the 183 answers it, the 2xx repeats it (one exchange in all)
    let mut p = Pair::invited(true);
    assert_eq!(
        p.bob_describes(Provisional { reliable: false }),
        Received::Answer
    );
    assert_eq!(p.bob.state(), OfferAnswer::Stable);
    assert_eq!(p.alice.receive(Success), Ok(Received::Repeat));
    p.stable(1);
    // without an offer an unreliable 183 cannot carry Bob's: it waits for the 2xx
    let mut p = Pair::invited(false);
    assert_eq!(
        p.bob.send_offer(Provisional { reliable: false }),
        Err(OfferAnswerError::Unexpected)
    );
    p.accepted();
}

#[test]
fn reliable_progress_and_prack_once_and_twice() {
    for with_offer in [true, false] {
        let mut p = Pair::invited(with_offer);
        let reliable = Provisional { reliable: true };
        match p.bob_describes(reliable) {
            // the reliable 183 answers; its PRACK carries nothing
            Received::Answer => assert!(with_offer),
            // the reliable 183 offers; the PRACK answers
            Received::Offer => {
                assert!(!with_offer);
                p.alice.send_answer(Prack).unwrap();
                assert_eq!(p.bob.receive(Prack), Ok(Received::Answer));
            }
            Received::Repeat => panic!("nothing to repeat yet"),
        }
        p.stable(1);
        // a second reliable 183 and the 2xx repeat the session
        assert_eq!(p.alice.receive(reliable), Ok(Received::Repeat));
        assert_eq!(p.alice.receive(Success), Ok(Received::Repeat));
        p.stable(1);
    }
}

#[test]
fn an_ack_without_the_answer_leaves_bobs_offer_open() {
    // SIP.js: "ACK without SDP" → BYE
    let mut p = Pair::invited(false);
    assert_eq!(p.bob_describes(Success), Received::Offer);
    assert_eq!(p.bob.state(), OfferAnswer::LocalOffer(Success));
    // an ACK body could only ever be that answer
    assert_eq!(
        Negotiation::new().receive(Ack),
        Err(OfferAnswerError::Unexpected)
    );
}

#[test]
fn reinvite_accepted_with_and_without_offer_from_either_side() {
    for with_offer in [true, false] {
        for alice_reinvites in [true, false] {
            let mut p = Pair::invited(true);
            p.accepted();
            let (from, to) = if alice_reinvites {
                (&mut p.alice, &mut p.bob)
            } else {
                (&mut p.bob, &mut p.alice)
            };
            if with_offer {
                from.send_offer(Invite).unwrap();
                assert_eq!(to.receive(Invite), Ok(Received::Offer));
                to.send_answer(Success).unwrap();
                assert_eq!(from.receive(Success), Ok(Received::Answer));
            } else {
                from.send_invite_without_offer().unwrap();
                to.receive_invite_without_offer().unwrap();
                to.send_offer(Success).unwrap();
                assert_eq!(from.receive(Success), Ok(Received::Offer));
                from.send_answer(Ack).unwrap();
                assert_eq!(to.receive(Ack), Ok(Received::Answer));
            }
            p.stable(2);
        }
    }
}

#[test]
fn reinvite_rejected_rolls_back_to_stable() {
    let mut p = Pair::invited(true);
    p.accepted();
    p.alice.send_offer(Invite).unwrap();
    assert_eq!(p.bob.receive(Invite), Ok(Received::Offer));
    // Bob's handler refuses the offer: 488, both roll back, the first session stands
    p.bob.rollback();
    p.alice.rollback();
    p.stable(1);
}

#[test]
fn a_reinvite_while_one_is_in_progress_is_request_pending() {
    let mut p = Pair::invited(true);
    p.accepted();
    p.alice.send_offer(Invite).unwrap();
    assert!(!p.alice.can_offer());
    assert_eq!(p.alice.send_offer(Update), Err(OfferAnswerError::Pending));
}

#[test]
fn reinvite_glare_gets_491_on_both_sides() {
    let mut p = Pair::invited(false);
    p.accepted();
    p.alice.send_offer(Invite).unwrap();
    p.bob.send_offer(Invite).unwrap();
    assert_eq!(p.alice.receive(Invite), Err(OfferAnswerError::Glare));
    assert_eq!(p.bob.receive(Invite), Err(OfferAnswerError::Glare));
    // each side's 491 rolls back the other's offer
    p.alice.rollback();
    p.bob.rollback();
    p.stable(1);
}
