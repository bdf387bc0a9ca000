//! Our offers after the first: which re-INVITE or UPDATE of ours is under way, whether a new
//! one may start, and when a refused one goes again (RFC 3261 §14.1, RFC 3311 §5.1,
//! RFC 4028 §10).
//!
//! A session has at most one re-offer of ours at a time ([`Reoffers`]), in one of these
//! states: none; sent and awaiting its final response; refused with 491 or 500 and waiting
//! out the back-off of [`backoff`] before it goes again; due again; or held
//! until the ACK of our 2xx, whose offer that ACK answers (RFC 3264 §4: no new offer before
//! the answer). While any of these stands, another re-offer is refused with "request
//! pending", and the session timer's refresh waits: that is the one "busy" rule for
//! re-INVITE, UPDATE and refresh alike.
//!
//! Whether the offer/answer state lets an offer go is [`Negotiation`](super::Negotiation)'s
//! business, and whether the session is established is [`Lifecycle`](super::Lifecycle)'s;
//! this machine only keeps our own requests apart. Like the rest of the core it neither
//! sends nor waits: the caller asks ([`Reoffers::ask`]), sends, says it did
//! ([`Reoffers::sent`]) and hands over the outcome; `poll_timeout`/`handle_timeout` give the
//! retry's time and `poll_event` says when to send it again.

use std::ops::Add;
use std::time::Duration;

use super::backoff;
use crate::rng::Rng;

/// Which request carries a re-offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A re-INVITE (RFC 3261 §14).
    ReInvite,
    /// An UPDATE (RFC 3311).
    Update,
}

/// What to do with a re-offer asked for now ([`Reoffers::ask`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Send it; then call [`Reoffers::sent`] (or [`Reoffers::not_sent`]).
    Send,
    /// Hold it: our 2xx's offer waits for its answer in the ACK. [`Event::Release`] says when
    /// to ask again.
    AfterAck,
    /// Another re-offer of ours is under way: refuse this one ("request pending").
    Busy,
}

/// How our re-offer's final response ends it ([`Reoffers::handle_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the re-offer succeeded.
    Accepted,
    /// Refused with 491 (glare) or 500 with a short Retry-After: it goes again after the
    /// back-off ([`Event::Retry`]).
    Retrying,
    /// Refused for good.
    Refused,
}

/// What the machine asks for ([`Reoffers::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The back-off is over: send the re-INVITE again (its attempts are counted here).
    Retry,
    /// The ACK came: the held re-offer of this kind may be asked for again.
    Release(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State<I, T> {
    Idle,
    /// Sent in transaction `id`: its final response is awaited.
    Sent {
        kind: Kind,
        id: T,
        attempts: u8,
    },
    /// Refused; goes again at `at`.
    Backoff {
        at: I,
        attempts: u8,
    },
    /// The back-off is over: the caller is sending it again.
    Due {
        attempts: u8,
    },
    /// Held until the ACK of our 2xx.
    AfterAck(Kind),
    /// The ACK came: the caller is asking for it again.
    Released(Kind),
}

/// Our re-offer in one session (see the module documentation). `I` is the caller's instant
/// type, `T` its transaction key.
#[derive(Debug, Clone)]
pub struct Reoffers<I, T> {
    state: State<I, T>,
    /// The side that sent the dialog's initial INVITE (it waits longer after glare).
    call_id_owner: bool,
    /// An event is due: [`Event::Retry`] in `Due`, [`Event::Release`] in `Released`.
    due: bool,
    /// The session left the established state ([`Reoffers::end`]): nothing starts again.
    ended: bool,
}

impl<I: Copy + Ord + Add<Duration, Output = I>, T: Copy + Eq> Reoffers<I, T> {
    /// No re-offer yet. `call_id_owner`: our side sent the initial INVITE.
    pub fn new(call_id_owner: bool) -> Reoffers<I, T> {
        Reoffers {
            state: State::Idle,
            call_id_owner,
            due: false,
            ended: false,
        }
    }

    /// Whether a re-offer of ours is under way in any form (sent, backing off, due again,
    /// or held for the ACK): the one "busy" rule.
    pub fn busy(&self) -> bool {
        self.state != State::Idle
    }

    /// The kind of our re-offer on the wire, awaiting its final response, if any.
    pub fn in_flight(&self) -> Option<Kind> {
        match self.state {
            State::Sent { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The kind of our re-offer in transaction `id`, if it is ours.
    pub fn sent_in(&self, id: T) -> Option<Kind> {
        match self.state {
            State::Sent { kind, id: ours, .. } if ours == id => Some(kind),
            _ => None,
        }
    }

    /// A re-offer of `kind` is asked for; `offers`: it carries an offer (a re-INVITE always
    /// makes an exchange, with our offer or by asking for the peer's); `awaiting_ack`: our
    /// 2xx's offer still waits for its answer in the ACK. A held re-offer just released
    /// ([`Event::Release`]) is asked for again and goes through; a retry that is due
    /// ([`Event::Retry`]) is not asked for: it is sent, then [`Reoffers::sent`].
    pub fn ask(&mut self, kind: Kind, offers: bool, awaiting_ack: bool) -> Ask {
        if self.ended {
            return Ask::Busy;
        }
        match self.state {
            State::Idle => {}
            State::Released(k) if k == kind => self.state = State::Idle,
            _ => return Ask::Busy,
        }
        if awaiting_ack && (kind == Kind::ReInvite || offers) {
            self.state = State::AfterAck(kind);
            return Ask::AfterAck;
        }
        Ask::Send
    }

    /// The re-offer asked for went out in transaction `id`.
    pub fn sent(&mut self, kind: Kind, id: T) {
        let attempts = match self.state {
            State::Due { attempts } => attempts,
            _ => 0,
        };
        self.state = State::Sent { kind, id, attempts };
    }

    /// The re-offer asked for could not be sent: nothing is under way.
    pub fn not_sent(&mut self) {
        if matches!(self.state, State::Due { .. } | State::Released(_)) {
            self.state = State::Idle;
        }
    }

    /// A final response (≥ 200) to transaction `id` came at `now`: how it ends our
    /// re-offer, or `None` when `id` is not ours. A re-INVITE refused with 491, or with 500
    /// and a Retry-After of at most 10 s (`retry_after`, in seconds), backs off
    /// ([`backoff::retry_after`]) and goes again, up to [`backoff::ATTEMPTS`] tries.
    pub fn handle_response(
        &mut self,
        id: T,
        status: u16,
        retry_after: Option<u64>,
        now: I,
        rng: &mut Rng,
    ) -> Option<Outcome> {
        let State::Sent {
            kind,
            id: ours,
            attempts,
        } = self.state
        else {
            return None;
        };
        if ours != id || status < 200 {
            return None;
        }
        self.state = State::Idle;
        if (200..300).contains(&status) {
            return Some(Outcome::Accepted);
        }
        if kind == Kind::ReInvite && !self.ended {
            let attempt = attempts + 1;
            let wait = backoff::retry_after(status, attempt, self.call_id_owner, retry_after, rng);
            if let Some(wait) = wait {
                self.state = State::Backoff {
                    at: now + wait,
                    attempts: attempt,
                };
                return Some(Outcome::Retrying);
            }
        }
        Some(Outcome::Refused)
    }

    /// Transaction `id` failed (a timeout or a transport error): the kind of our re-offer
    /// that ended with it, if it was ours.
    pub fn handle_failure(&mut self, id: T) -> Option<Kind> {
        let kind = self.sent_in(id)?;
        self.state = State::Idle;
        Some(kind)
    }

    /// The ACK of our 2xx came (or will never come): a held re-offer is released
    /// ([`Event::Release`]).
    pub fn handle_ack(&mut self) {
        if let State::AfterAck(kind) = self.state {
            self.state = State::Released(kind);
            self.due = true;
        }
    }

    /// The session left the established state: a re-offer that waits (backing off, due,
    /// or held for the ACK) will not go, and none starts or backs off from now on. Its
    /// kind, so that whoever asked for it hears. One on the wire stays until its response.
    pub fn end(&mut self) -> Option<Kind> {
        self.ended = true;
        let kind = match self.state {
            State::Backoff { .. } | State::Due { .. } => Kind::ReInvite,
            State::AfterAck(kind) | State::Released(kind) => kind,
            State::Idle | State::Sent { .. } => return None,
        };
        self.state = State::Idle;
        self.due = false;
        Some(kind)
    }

    /// Whether the session timer's refresh may go now (RFC 4028 §10), and in what: an
    /// UPDATE without a body when the peer allows UPDATE, else a re-INVITE. `None` while a
    /// re-offer is under way or `can_offer` is false (an exchange is open): put it off.
    pub fn refresh(&self, can_offer: bool, peer_allows_update: bool) -> Option<Kind> {
        if self.busy() || !can_offer {
            return None;
        }
        Some(if peer_allows_update {
            Kind::Update
        } else {
            Kind::ReInvite
        })
    }

    /// When [`Reoffers::handle_timeout`] is next wanted.
    pub fn poll_timeout(&self) -> Option<I> {
        match self.state {
            State::Backoff { at, .. } => Some(at),
            _ => None,
        }
    }

    /// Time has come to `now`: a back-off that is over makes [`Event::Retry`] due.
    pub fn handle_timeout(&mut self, now: I) {
        if let State::Backoff { at, attempts } = self.state {
            if at <= now {
                self.state = State::Due { attempts };
                self.due = true;
            }
        }
    }

    /// Whether [`Reoffers::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        self.due
    }

    /// The next thing to do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if !std::mem::take(&mut self.due) {
            return None;
        }
        match self.state {
            State::Due { .. } => Some(Event::Retry),
            State::Released(kind) => Some(Event::Release(kind)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Virtual time: a `Duration` since the start.
    type R = Reoffers<Duration, u32>;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_reoffer_at_a_time_whatever_its_kind() {
        let mut r = R::new(true);
        assert_eq!(r.ask(Kind::Update, false, false), Ask::Send);
        r.sent(Kind::Update, 1);
        assert!(r.busy() && r.in_flight() == Some(Kind::Update));
        for kind in [Kind::ReInvite, Kind::Update] {
            assert_eq!(r.ask(kind, true, false), Ask::Busy);
        }
        assert_eq!(r.refresh(true, true), None);
        assert_eq!(r.sent_in(2), None);
        assert_eq!(
            r.handle_response(2, 200, None, ms(0), &mut Rng::new(1)),
            None
        );
        assert_eq!(
            r.handle_response(1, 200, None, ms(0), &mut Rng::new(1)),
            Some(Outcome::Accepted)
        );
        assert!(!r.busy());
        assert_eq!(r.refresh(true, false), Some(Kind::ReInvite));
        assert_eq!(r.refresh(false, true), None, "an open exchange puts it off");
    }

    #[test]
    fn glare_backs_off_then_retries_with_the_attempts_counted() {
        let mut rng = Rng::new(3);
        let mut r = R::new(true);
        let mut now = ms(0);
        for attempt in 1..backoff::ATTEMPTS {
            r.sent(Kind::ReInvite, u32::from(attempt));
            let o = r.handle_response(u32::from(attempt), 491, None, now, &mut rng);
            assert_eq!(o, Some(Outcome::Retrying));
            assert_eq!(r.ask(Kind::Update, false, false), Ask::Busy);
            let at = r.poll_timeout().unwrap();
            assert!(
                at >= now + ms(2_100) && at <= now + ms(4_000),
                "the owner's wait"
            );
            r.handle_timeout(at - ms(1));
            assert_eq!(r.poll_event(), None);
            r.handle_timeout(at);
            assert_eq!(r.poll_event(), Some(Event::Retry));
            assert_eq!(r.poll_event(), None);
            assert_eq!(
                r.ask(Kind::ReInvite, true, false),
                Ask::Busy,
                "the retry goes first"
            );
            now = at;
        }
        r.sent(Kind::ReInvite, 9);
        assert_eq!(
            r.handle_response(9, 491, None, now, &mut rng),
            Some(Outcome::Refused),
            "the last attempt's 491 goes to the user"
        );
        assert!(!r.busy());
    }

    #[test]
    fn an_update_is_never_retried_and_a_failure_frees_the_session() {
        let mut r = R::new(false);
        r.sent(Kind::Update, 4);
        let o = r.handle_response(4, 491, None, ms(0), &mut Rng::new(1));
        assert_eq!(o, Some(Outcome::Refused));
        r.sent(Kind::ReInvite, 5);
        assert_eq!(r.handle_failure(6), None);
        assert_eq!(r.handle_failure(5), Some(Kind::ReInvite));
        assert!(!r.busy());
    }

    #[test]
    fn a_reoffer_waits_for_the_ack_that_answers_our_offer() {
        let mut r = R::new(false);
        // an UPDATE without a body opens no exchange: it need not wait
        assert_eq!(r.ask(Kind::Update, false, true), Ask::Send);
        assert_eq!(r.ask(Kind::ReInvite, false, true), Ask::AfterAck);
        assert_eq!(r.ask(Kind::Update, true, false), Ask::Busy);
        assert_eq!(r.poll_event(), None);
        r.handle_ack();
        assert_eq!(r.poll_event(), Some(Event::Release(Kind::ReInvite)));
        assert_eq!(
            r.ask(Kind::Update, true, false),
            Ask::Busy,
            "only the held one"
        );
        assert_eq!(r.ask(Kind::ReInvite, false, false), Ask::Send);
        r.sent(Kind::ReInvite, 1);
        assert_eq!(r.sent_in(1), Some(Kind::ReInvite));
    }

    #[test]
    fn the_end_drops_what_waits_and_keeps_what_is_on_the_wire() {
        let mut rng = Rng::new(5);
        let mut r = R::new(false);
        assert_eq!(r.ask(Kind::Update, true, true), Ask::AfterAck);
        assert_eq!(r.end(), Some(Kind::Update));
        assert!(!r.busy());
        let mut r = R::new(false);
        r.sent(Kind::ReInvite, 1);
        let _ = r.handle_response(1, 500, Some(2), ms(0), &mut rng);
        assert_eq!(r.poll_timeout(), Some(ms(2_000)));
        assert_eq!(r.end(), Some(Kind::ReInvite));
        assert_eq!(r.poll_timeout(), None);
        let mut r = R::new(false);
        r.sent(Kind::ReInvite, 2);
        assert_eq!(r.end(), None);
        assert_eq!(r.in_flight(), Some(Kind::ReInvite));
        // its 491 after the end backs off no more
        let o = r.handle_response(2, 491, None, ms(0), &mut rng);
        assert_eq!(o, Some(Outcome::Refused));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.ask(Kind::Update, false, false), Ask::Busy);
        // a due retry that is dropped is not sent either
        let mut r = R::new(true);
        r.sent(Kind::ReInvite, 3);
        let _ = r.handle_response(3, 491, None, ms(0), &mut rng);
        r.handle_timeout(ms(5_000));
        assert_eq!(r.end(), Some(Kind::ReInvite));
        assert_eq!(r.poll_event(), None);
        assert!(!r.busy());
    }
}
