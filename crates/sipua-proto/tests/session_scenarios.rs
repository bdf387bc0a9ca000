//! SIP.js's session scenarios (`test/spec/api/session.spec.ts`,
//! `session-in-dialog.spec.ts`, `core/user-agent-core.spec.ts`), run against the sans-IO
//! machines directly. No tokio, no network: the whole file runs in microseconds. The same
//! scenarios run as whole user agents over the simulated network in
//! `crates/sipua/tests/session.rs`.
//!
//! - The offer/answer part, against `Media` (the machine the session task drives, holding the
//!   `Negotiation`), with and without an offer in the INVITE as SIP.js runs them: which
//!   message carries the offer, which the answer, what each side's media handler is asked
//!   and when, what a failure leaves.
//! - The state part, against `Lifecycle` (one per side): accept and reject, once and twice;
//!   CANCEL before and after a provisional and its races with the 200; hanging up before
//!   the ACK, with the ACK lost for good; the no-answer and `Expires` timeouts; a re-INVITE
//!   racing a BYE from either side.
//! - Our re-offers, against `Reoffers`: glare's back-off and retry, and no retry once a BYE
//!   ended the session.
//! - The caller's responses, against `Caller`: a forked INVITE (early media from one fork,
//!   the 2xx of another, the first's late 2xx ended), the one resend after a 422, a 2xx
//!   crossing the CANCEL.
//! - The callee's reliable provisional responses, against `Callee` and `Media`: the
//!   answer in a reliable 183, the next reliable 1xx held until its PRACK.

use std::time::Duration;

use sipua_proto::rng::Rng;
use sipua_proto::session::callee::{Callee, ProgressError, Rel100};
use sipua_proto::session::caller::{Caller, Confirm, Final};
use sipua_proto::session::lifecycle::{Bye, Cancel, Event as LifeEvent, Lifecycle, SessionState};
use sipua_proto::session::media::Ask as Do;
use sipua_proto::session::reoffer::{Ask, Event, Kind, Outcome, Reoffers};
use sipua_proto::session::{Media, Message, OfferAnswer, OfferAnswerError, Received};
use Message::*;
use SessionState::*;

/// What `side`'s media handler is asked, drained.
fn asks(side: &mut Media) -> Vec<Do> {
    std::iter::from_fn(|| side.poll_ask()).collect()
}

/// `side` offers in request `m`: its handler describes, and the request goes.
fn offers(side: &mut Media, m: Message) {
    side.offer(m).unwrap();
    assert_eq!(asks(side), [Do::Describe(m)]);
    side.sent(m, true);
}

/// `side` sends response (or ACK) `m`: what its handler is asked for it, then it goes
/// (with a body when one was made or repeated).
fn responds(side: &mut Media, m: Message) -> Vec<Do> {
    let carries = side.respond(m);
    let done = asks(side);
    assert_eq!(carries, !done.is_empty());
    side.sent(m, carries);
    done
}

/// A body arrives at `side` in `m`: what it is, checking that the handler is asked to apply
/// exactly that.
fn takes(side: &mut Media, m: Message) -> Result<Received, OfferAnswerError> {
    let r = side.received(m, true);
    let want = match r {
        Ok(Some(Received::Offer)) => vec![Do::ApplyOffer(m)],
        Ok(Some(Received::Answer)) => vec![Do::ApplyAnswer(m)],
        _ => vec![],
    };
    assert_eq!(asks(side), want, "{m:?}: {r:?}");
    r.map(|r| r.expect("a body"))
}

/// Alice (the caller) and Bob, each with the machine of their side of one session.
struct Pair {
    alice: Media,
    bob: Media,
}

impl Pair {
    /// Alice has sent her INVITE, with an offer or without, and Bob has it (his handler is
    /// asked nothing until he responds with a description).
    fn invited(with_offer: bool) -> Pair {
        let mut alice = Media::new();
        if with_offer {
            offers(&mut alice, Invite);
        } else {
            alice.sent(Invite, false);
            assert_eq!(alice.state(), OfferAnswer::AwaitingOffer);
        }
        let mut bob = Media::callee(with_offer);
        assert_eq!(asks(&mut bob), []);
        Pair { alice, bob }
    }

    /// Bob puts his description in `m` (a response to the INVITE): his answer (applying
    /// the INVITE's offer first, the first time), his offer when the INVITE had none, or the
    /// last one again; Alice takes it.
    fn bob_describes(&mut self, m: Message) -> Received {
        let done = responds(&mut self.bob, m);
        assert!(
            !done.is_empty(),
            "a response to the INVITE carries a description"
        );
        takes(&mut self.alice, m).unwrap()
    }

    /// Bob accepts: the 2xx, and the ACK (with Alice's answer when the 2xx offered).
    fn accepted(&mut self) {
        if self.bob_describes(Success) == Received::Offer {
            assert_eq!(responds(&mut self.alice, Ack), [Do::Describe(Ack)]);
            assert_eq!(takes(&mut self.bob, Ack), Ok(Received::Answer));
        }
        self.stable(1);
    }

    /// Both sides' re-INVITEs crossed: each takes the other's as glare (491, asking its
    /// handler nothing), and each side's 491 rolls back the other's offer.
    fn crossing_reinvites_refused(&mut self) {
        assert_eq!(takes(&mut self.alice, Invite), Err(OfferAnswerError::Glare));
        assert_eq!(takes(&mut self.bob, Invite), Err(OfferAnswerError::Glare));
        self.alice.refused(Invite);
        self.bob.refused(Invite);
        let both = (asks(&mut self.alice), asks(&mut self.bob));
        assert_eq!(both, (vec![Do::Rollback], vec![Do::Rollback]));
    }

    /// Both sides stable, with `n` exchanges done.
    fn stable(&self, n: u32) {
        assert_eq!(self.alice.state(), OfferAnswer::Stable);
        assert_eq!(self.bob.state(), OfferAnswer::Stable);
        let counts = (
            self.alice.negotiation().exchanges(),
            self.bob.negotiation().exchanges(),
        );
        assert_eq!(counts, (n, n));
    }
}

#[test]
fn accept() {
    for with_offer in [true, false] {
        let mut p = Pair::invited(with_offer);
        p.accepted();
    }
    // the answering side applies the INVITE's offer as its 2xx is made, not before
    let mut p = Pair::invited(true);
    assert_eq!(
        responds(&mut p.bob, Success),
        [Do::ApplyOffer(Invite), Do::Describe(Success)]
    );
}

#[test]
fn accept_twice_describes_nothing_new() {
    // the second accept() throws in SIP.js; here a second 2xx body is only a repeat
    let mut p = Pair::invited(true);
    p.accepted();
    assert_eq!(takes(&mut p.alice, Success), Ok(Received::Repeat));
    // and the session's 2xx no longer repeats anything
    assert!(!p.bob.respond(UpdateSuccess));
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
    assert_eq!(responds(&mut p.bob, Success), [Do::Repeat(Success)]);
    assert_eq!(takes(&mut p.alice, Success), Ok(Received::Repeat));
    p.stable(1);
    // without an offer an unreliable 183 shows Bob's offer, which only the 2xx carries
    // as one: the 2xx repeats it and Alice's ACK answers
    let mut p = Pair::invited(false);
    let unreliable = Provisional { reliable: false };
    assert_eq!(responds(&mut p.bob, unreliable), [Do::Describe(unreliable)]);
    assert_eq!(p.bob.state(), OfferAnswer::OweOffer);
    assert_eq!(responds(&mut p.bob, Success), [Do::Repeat(Success)]);
    assert_eq!(p.bob.state(), OfferAnswer::LocalOffer(Success));
    assert_eq!(takes(&mut p.alice, Success), Ok(Received::Offer));
    assert_eq!(responds(&mut p.alice, Ack), [Do::Describe(Ack)]);
    assert_eq!(takes(&mut p.bob, Ack), Ok(Received::Answer));
    p.stable(1);
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
                assert_eq!(responds(&mut p.alice, Prack), [Do::Describe(Prack)]);
                assert_eq!(takes(&mut p.bob, Prack), Ok(Received::Answer));
            }
            Received::Repeat => panic!("nothing to repeat yet"),
        }
        p.stable(1);
        // a second reliable 183 and the 2xx repeat the session
        assert_eq!(responds(&mut p.bob, reliable), [Do::Repeat(reliable)]);
        assert_eq!(takes(&mut p.alice, reliable), Ok(Received::Repeat));
        assert_eq!(responds(&mut p.bob, Success), [Do::Repeat(Success)]);
        assert_eq!(takes(&mut p.alice, Success), Ok(Received::Repeat));
        p.stable(1);
    }
}

#[test]
fn an_ack_without_the_answer_rolls_bobs_offer_back() {
    // SIP.js: "ACK without SDP" → BYE
    let mut p = Pair::invited(false);
    assert_eq!(p.bob_describes(Success), Received::Offer);
    assert_eq!(p.bob.state(), OfferAnswer::LocalOffer(Success));
    assert_eq!(p.bob.received(Ack, false), Err(OfferAnswerError::Missing));
    // his handler forgets the offer; the session task then ends the call
    assert_eq!(asks(&mut p.bob), [Do::Rollback]);
    assert_eq!(p.bob.state(), OfferAnswer::Stable);
    // an ACK body could only ever be that answer
    assert_eq!(
        Media::new().received(Ack, true),
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
                offers(from, Invite);
                assert_eq!(takes(to, Invite), Ok(Received::Offer));
                assert_eq!(responds(to, Success), [Do::Describe(Success)]);
                assert_eq!(takes(from, Success), Ok(Received::Answer));
            } else {
                from.sent(Invite, false);
                assert_eq!(to.received(Invite, false), Ok(None));
                // the 2xx carries the offer, the ACK the answer
                assert_eq!(responds(to, Success), [Do::Describe(Success)]);
                assert_eq!(takes(from, Success), Ok(Received::Offer));
                assert_eq!(responds(from, Ack), [Do::Describe(Ack)]);
                assert_eq!(takes(to, Ack), Ok(Received::Answer));
            }
            p.stable(2);
        }
    }
}

#[test]
fn reinvite_rejected_rolls_back_to_stable() {
    let mut p = Pair::invited(true);
    p.accepted();
    offers(&mut p.alice, Invite);
    // Bob's task takes the offer and asks for his answer in one run, as it does
    assert_eq!(p.bob.received(Invite, true), Ok(Some(Received::Offer)));
    assert!(p.bob.respond(Success));
    assert_eq!(p.bob.poll_ask(), Some(Do::ApplyOffer(Invite)));
    assert_eq!(p.bob.poll_ask(), Some(Do::Describe(Success)));
    // his handler cannot answer it: the machine returns to where the run began and his
    // handler forgets the offer it applied; 488 goes, and Alice's 488 rolls her offer
    // back; the first session stands
    p.bob.failed();
    assert_eq!(asks(&mut p.bob), [Do::Rollback]);
    p.alice.refused(Invite);
    assert_eq!(asks(&mut p.alice), [Do::Rollback]);
    p.stable(1);
}

#[test]
fn a_reinvite_while_one_is_in_progress_is_request_pending() {
    let mut p = Pair::invited(true);
    p.accepted();
    offers(&mut p.alice, Invite);
    assert!(!p.alice.can_offer());
    assert_eq!(p.alice.offer(Update), Err(OfferAnswerError::Pending));
    assert_eq!(asks(&mut p.alice), []);
}

#[test]
fn reinvite_glare_gets_491_on_both_sides() {
    let mut p = Pair::invited(false);
    p.accepted();
    offers(&mut p.alice, Invite);
    offers(&mut p.bob, Invite);
    p.crossing_reinvites_refused();
    p.stable(1);
}

// ---- the state part: `Lifecycle` on each side ----

/// Virtual time: a `Duration` since Bob got the INVITE.
fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Alice has sent her INVITE (`Establishing`); Bob has it, with a no-answer timeout of 60 s
/// and the INVITE's `Expires` if any.
fn calls(expires: Option<u32>) -> (Lifecycle<Duration>, Lifecycle<Duration>) {
    let mut alice = Lifecycle::caller();
    alice.advance(Establishing);
    let mut bob = Lifecycle::callee(at(0), at(60), expires);
    bob.advance(Establishing);
    (alice, bob)
}

fn events(l: &mut Lifecycle<Duration>) -> Vec<LifeEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Bob accepts (his 2xx goes), Alice gets it and ACKs, Bob gets the ACK.
fn established() -> (Lifecycle<Duration>, Lifecycle<Duration>) {
    let (mut alice, mut bob) = calls(None);
    bob.final_sent(true);
    assert_eq!(bob.state(), Established);
    alice.advance(Established);
    assert!(bob.handle_ack());
    (alice, bob)
}

#[test]
fn accept_then_bye_from_either_side() {
    for bob_hangs_up in [false, true] {
        let (mut alice, mut bob) = established();
        let (hangs_up, other) = if bob_hangs_up {
            (&mut bob, &mut alice)
        } else {
            (&mut alice, &mut bob)
        };
        assert_eq!(hangs_up.request_bye(), Bye::Now);
        // the BYE arrives
        other.advance(Terminated);
        assert_eq!((alice.state(), bob.state()), (Terminated, Terminated));
        assert_eq!((alice.poll_timeout(), bob.poll_timeout()), (None, None));
    }
}

#[test]
fn accept_twice_and_reject_twice_are_refused() {
    // SIP.js throws on the second call; the task answers a state error unless `may_answer()`
    let (_, bob) = established();
    assert!(!bob.may_answer());
    let (mut alice, mut bob) = calls(None);
    assert!(bob.may_answer());
    bob.final_sent(false);
    bob.advance(Terminated);
    assert!(!bob.may_answer());
    // the 480 reaches Alice
    alice.advance(Terminated);
    assert_eq!(bob.request_bye(), Bye::Refused(Terminated));
}

#[test]
fn cancel_before_or_after_a_provisional_ends_both_sides() {
    for provisional in [false, true] {
        let (mut alice, mut bob) = calls(None);
        if provisional {
            // Bob's 180: no change of state, and no answer yet
            assert!(bob.may_answer());
        }
        // Alice cancels: Terminating until the INVITE's 487; once only
        assert_eq!(alice.request_cancel(), Cancel::Send);
        assert_eq!(alice.state(), Terminating);
        assert_eq!(alice.request_cancel(), Cancel::Refused(Terminating));
        // Bob gets the CANCEL: the core has answered the INVITE 487
        bob.final_sent(false);
        bob.advance(Terminated);
        assert!(!bob.may_answer(), "accept() after the CANCEL is refused");
        alice.advance(Terminated);
        assert_eq!(bob.poll_timeout(), None, "no 480 after the CANCEL");
    }
}

#[test]
fn cancel_and_accept_race_the_200_wins() {
    // Bob's 200 and Alice's CANCEL cross: Bob is established (the core answers the CANCEL
    // 200 and leaves the call), Alice gets a 200 after cancelling: she ACKs and says BYE
    let (mut alice, mut bob) = calls(None);
    assert_eq!(alice.request_cancel(), Cancel::Send);
    bob.final_sent(true);
    // the task sees the 2xx crossed the CANCEL
    assert!(alice.cancelled());
    assert!(
        !alice.advance(Established),
        "a cancelled call does not come back up"
    );
    assert_eq!(alice.state(), Terminating);
    // her ACK, then her BYE, reach Bob
    assert!(bob.handle_ack());
    bob.advance(Terminated);
    alice.advance(Terminated);
    assert!(events(&mut bob).is_empty());
}

#[test]
fn hanging_up_before_the_ack_waits_for_it_or_gives_up_without_it() {
    for ack_comes in [true, false] {
        let (mut alice, mut bob) = calls(None);
        bob.final_sent(true);
        alice.advance(Established);
        // Bob hangs up at once (SIP.js: accept() then terminate(), the ACKs lost)
        assert_eq!(bob.request_bye(), Bye::AfterAck);
        assert_eq!(bob.state(), Terminating);
        assert!(events(&mut bob).is_empty(), "no BYE before the ACK");
        if ack_comes {
            assert!(bob.handle_ack());
            assert_eq!(events(&mut bob), [LifeEvent::SendBye]);
        } else {
            // timer H: the core ends the dialog (and says BYE itself, §13.3.1.4)
            bob.handle_ack_timeout();
            assert_eq!(events(&mut bob), [LifeEvent::ByeAbandoned]);
        }
        assert_eq!(bob.state(), Terminated);
        alice.advance(Terminated);
    }
}

#[test]
fn an_unanswered_invite_times_out_480_or_487_by_its_expires() {
    for (expires, due, status) in [(None, 60, 480), (Some(20), 20, 487), (Some(90), 60, 480)] {
        let (mut alice, mut bob) = calls(expires);
        // Bob's 180 went; nobody answers
        assert_eq!(bob.poll_timeout(), Some(at(due)));
        bob.handle_timeout(at(due));
        assert_eq!(events(&mut bob), [LifeEvent::AnswerTimeout(status)]);
        // the session task rejects with that status
        bob.final_sent(false);
        bob.advance(Terminated);
        alice.advance(Terminated);
        assert_eq!(bob.poll_timeout(), None);
    }
}

#[test]
fn a_reinvite_racing_a_bye_from_either_side_is_dropped() {
    for local_bye in [true, false] {
        let (mut p, (mut alice, mut bob)) = (Pair::invited(true), established());
        let mut ours = Reoffers::<Duration, u32>::new(true);
        p.accepted();
        // Alice re-INVITEs (hold) ...
        assert_eq!(ours.ask(Kind::ReInvite, true, false), Ask::Send);
        offers(&mut p.alice, Invite);
        ours.sent(Kind::ReInvite, 2);
        if local_bye {
            // ... and hangs up before its answer: the session ends at once
            assert_eq!(alice.request_bye(), Bye::Now);
        } else {
            // ... and Bob's BYE crosses it
            assert_eq!(bob.request_bye(), Bye::Now);
            alice.advance(Terminated);
        }
        // the session task tells the re-offers the session is over; nothing waits yet
        assert_eq!(ours.end(), None);
        // the re-INVITE's 491 or 481 comes back: no retry on an ended session
        let status = if local_bye { 491 } else { 481 };
        let outcome = ours.handle_response(2, status, None, at(1), &mut Rng::new(1));
        assert_eq!(outcome, Some(Outcome::Refused));
        assert_eq!((ours.poll_timeout(), alice.poll_timeout()), (None, None));
        assert_eq!(alice.state(), Terminated);
    }
}

#[test]
fn glare_retries_after_the_back_off_while_established() {
    let (mut p, _) = (Pair::invited(true), established());
    p.accepted();
    // Alice (the Call-ID's owner) and Bob re-INVITE at once: each refuses the other's 491
    let (mut alice, mut bob) = (Reoffers::<Duration, u32>::new(true), Reoffers::new(false));
    let mut rng = Rng::new(7);
    for (ours, n) in [(&mut alice, &mut p.alice), (&mut bob, &mut p.bob)] {
        assert_eq!(ours.ask(Kind::ReInvite, true, false), Ask::Send);
        offers(n, Invite);
        ours.sent(Kind::ReInvite, 1);
    }
    p.crossing_reinvites_refused();
    for ours in [&mut alice, &mut bob] {
        let outcome = ours.handle_response(1, 491, None, at(0), &mut rng);
        assert_eq!(outcome, Some(Outcome::Retrying));
    }
    // the back-off of §14.1: 2.1–4 s for the owner, up to 2 s for the other: Bob goes first
    let (a, b) = (alice.poll_timeout().unwrap(), bob.poll_timeout().unwrap());
    assert!(b < a && (at(2)..=at(4)).contains(&a) && a >= at(0) + Duration::from_millis(2100));
    bob.handle_timeout(b);
    alice.handle_timeout(b);
    assert_eq!(
        (bob.poll_event(), alice.poll_event()),
        (Some(Event::Retry), None)
    );
    offers(&mut p.bob, Invite);
    bob.sent(Kind::ReInvite, 2);
    assert_eq!(takes(&mut p.alice, Invite), Ok(Received::Offer));
    // Alice's retry, due while Bob's offer is open, waits for that exchange to end
    alice.handle_timeout(a);
    assert_eq!(alice.poll_event(), Some(Event::Retry));
    assert!(!p.alice.can_offer());
    assert_eq!(responds(&mut p.alice, Success), [Do::Describe(Success)]);
    assert_eq!(takes(&mut p.bob, Success), Ok(Received::Answer));
    assert_eq!(
        bob.handle_response(2, 200, None, a, &mut rng),
        Some(Outcome::Accepted)
    );
    offers(&mut p.alice, Invite);
    alice.sent(Kind::ReInvite, 3);
    assert_eq!(takes(&mut p.bob, Invite), Ok(Received::Offer));
    assert_eq!(responds(&mut p.bob, Success), [Do::Describe(Success)]);
    assert_eq!(takes(&mut p.alice, Success), Ok(Received::Answer));
    assert_eq!(
        alice.handle_response(3, 200, None, a, &mut rng),
        Some(Outcome::Accepted)
    );
    assert!(!alice.busy() && !bob.busy());
    p.stable(3);
}

#[test]
fn a_forked_invite_takes_the_first_2xx_and_ends_the_others() {
    // Alice's INVITE forks to Bob's desk phone (dialog 1) and his mobile (dialog 2): the
    // desk phone's 183 gives early media, the mobile answers first, then the desk phone
    for with_offer in [true, false] {
        let mut alice = Caller::<u8>::new(true);
        let mut oa = Media::new();
        if with_offer {
            offers(&mut oa, Invite);
        } else {
            oa.sent(Invite, false);
        }
        alice.sent(with_offer);
        let awaited = oa.state() == OfferAnswer::LocalOffer(Invite);
        assert_eq!(alice.early_media(Some(&1), true, awaited), with_offer);
        if with_offer {
            let early = Provisional { reliable: false };
            assert_eq!(takes(&mut oa, early), Ok(Received::Answer));
            alice.early_applied(1);
        }
        // the mobile's 200 wins: its answer replaces the desk phone's early one, or its
        // offer is answered in the ACK
        let expect = if with_offer {
            Confirm::Answer
        } else {
            Confirm::AnswerInAck
        };
        assert_eq!(
            alice.handle_final(200, Some(2), true, None, false),
            Final::Confirm(2, expect)
        );
        assert_eq!(alice.confirmed(), Some(&2));
        if with_offer {
            // the exchange is done: the 2xx is a repeat to the negotiation, and its answer
            // is applied in place of the early one
            assert_eq!(takes(&mut oa, Success), Ok(Received::Repeat));
            oa.replace_answer(Success);
            assert_eq!(asks(&mut oa), [Do::ApplyAnswer(Success)]);
        } else {
            assert_eq!(takes(&mut oa, Success), Ok(Received::Offer));
            assert_eq!(responds(&mut oa, Ack), [Do::Describe(Ack)]);
        }
        assert_eq!(oa.state(), OfferAnswer::Stable);
        // the mobile's 200 again (retransmitted), then the desk phone's: ACK and BYE it
        assert_eq!(
            alice.handle_final(200, Some(2), true, None, false),
            Final::Nothing
        );
        assert_eq!(
            alice.handle_final(200, Some(1), true, None, false),
            Final::EndFork {
                dialog: 1,
                answer_in_ack: !with_offer
            }
        );
    }
}

#[test]
fn a_422_resends_once_and_a_2xx_after_a_cancel_does_not_bring_the_call_up() {
    let (mut alice, _) = calls(None);
    let mut caller = Caller::<u8>::new(false);
    caller.sent(true);
    // the callee wants a longer session interval: the INVITE goes again, once
    assert_eq!(
        caller.handle_final(422, None, false, Some(1800), false),
        Final::Resend422(1800)
    );
    assert_eq!(
        caller.handle_final(422, None, false, Some(1800), false),
        Final::Rejected
    );
    // a new call: Alice cancels, and the 200 crosses her CANCEL
    let mut caller = Caller::<u8>::new(false);
    caller.sent(true);
    assert_eq!(alice.request_cancel(), Cancel::Send);
    assert_eq!(
        caller.handle_final(200, Some(1), true, None, alice.cancelled()),
        Final::CrossedCancel
    );
    assert_eq!(caller.confirmed(), None);
}

#[test]
fn a_reliable_183_carries_the_answer_and_the_next_waits_for_its_prack() {
    // Alice's INVITE offers and supports 100rel; Bob sends early media in a reliable 183
    let mut p = Pair::invited(true);
    let mut bob = Callee::new(Rel100::Supported);
    assert_eq!(bob.progress(183, true), Ok(true));
    let reliable = Provisional { reliable: true };
    assert_eq!(
        responds(&mut p.bob, reliable),
        [Do::ApplyOffer(Invite), Do::Describe(reliable)],
        "a 1xx may carry the answer"
    );
    bob.sent_reliably();
    // a second reliable 1xx waits for the first one's PRACK (RFC 3262 §3)
    assert_eq!(bob.progress(180, true), Err(ProgressError::PrackPending));
    assert_eq!(
        bob.progress(180, false),
        Ok(false),
        "an unreliable one may go"
    );
    assert_eq!(takes(&mut p.alice, reliable), Ok(Received::Answer));
    // Alice's PRACK (without a body: the exchange is done)
    assert!(bob.handle_prack());
    assert_eq!(bob.progress(180, true), Ok(true));
    // the 200 repeats the answer: nothing new is negotiated
    p.stable(1);
    // and a caller that does not support 100rel never gets one reliably
    let bob = Callee::new(Rel100::Unsupported);
    assert_eq!(bob.progress(183, true), Err(ProgressError::Unsupported));
}
