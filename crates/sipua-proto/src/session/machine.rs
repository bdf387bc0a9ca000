//! The INVITE session's machines as one (RFC 3261 §13–§15, RFC 3264, RFC 3311 §5,
//! RFC 4028 §10): [`Session`] holds where the session is ([`Lifecycle`]), where its
//! offer/answer stands and what the media handler is asked ([`Media`]), and our re-offers
//! ([`Reoffers`]), behind one clock (`poll_timeout`/`handle_timeout`) and one queue of events
//! (`poll_event`), and makes the decisions that need more than one of them:
//!
//! - a re-offer asked for while our 2xx's offer waits for its answer in the ACK is held for
//!   that ACK (RFC 3264 §4), and one held or backing off ends with the session, or when
//!   the ACK never comes;
//! - the session timer's refresh goes as an UPDATE or a re-INVITE when no exchange is under
//!   way, else a second later (RFC 4028 §10), and every 2xx to a re-offer either way
//!   restarts the timer (§9, §10);
//! - a peer's offer that the negotiation cannot take now is refused with 491 on glare or
//!   500 with a Retry-After of 0–10 s while its earlier offer awaits our answer (RFC 3261
//!   §14.2, RFC 3311 §5.2);
//! - our re-offer that failed (no response) or was refused leaves the media as it was;
//! - the ACK of our 2xx answers the offer that 2xx made, if it made one, and then releases
//!   a re-offer held for it.
//!
//! What each machine decides alone is reached through [`Session::life`], [`Session::media`]
//! and [`Session::reoffers`] (and their `_mut`). The async `sipua` session task holds one
//! `Session` and does what it asks.

use std::ops::Add;
use std::time::Duration;

use sipua_message::{Header, Request, Response};

use super::lifecycle::{self, Lifecycle, SessionState};
use super::media::Media;
use super::negotiation::{Message, OfferAnswer, OfferAnswerError};
use super::reoffer::{self, Ask, Kind, Reoffers};
use super::timer;
use crate::rng::Rng;

/// How long a refresh that found an exchange under way waits before it is tried again.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// What the session asks for ([`Session::poll_event`]), the lifecycle's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// From [`Lifecycle`]: an answer deadline passed, the held BYE may go or is abandoned,
    /// the session timer wants a refresh or expired.
    Life(lifecycle::Event),
    /// From [`Reoffers`]: our refused re-INVITE goes again, or a re-offer held for the ACK
    /// may be asked for again.
    Reoffer(reoffer::Event),
}

/// Why a peer's offer is refused now ([`Session::peer_offer`]), as the response says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 491 on glare (an offer of ours is out), else 500.
    pub status: u16,
    /// With a 500: the Retry-After in seconds (0–10, RFC 3261 §14.2).
    pub retry_after: Option<u32>,
    /// What the negotiation said.
    pub why: OfferAnswerError,
}

/// One INVITE session's rules with no I/O and no clock of its own: see the module doc.
#[derive(Debug)]
pub struct Session<I, T> {
    life: Lifecycle<I>,
    reoffer: Reoffers<I, T>,
    media: Media,
    /// The peer's Allow lists UPDATE: refreshes use it rather than re-INVITE.
    peer_allows_update: bool,
}

impl<I, T> Session<I, T>
where
    I: Copy + Ord + Add<Duration, Output = I>,
    T: Copy + Eq,
{
    /// A caller's session, before its INVITE.
    pub fn caller() -> Session<I, T> {
        Session {
            life: Lifecycle::caller(),
            reoffer: Reoffers::new(true),
            media: Media::new(),
            peer_allows_update: false,
        }
    }

    /// A callee's session, its INVITE just in (`offered`: it carries an offer) at `now`,
    /// refused 480 after `no_answer_timeout` or 487 at its `Expires`.
    pub fn callee(
        now: I,
        no_answer_timeout: Duration,
        expires: Option<u32>,
        offered: bool,
    ) -> Session<I, T> {
        Session {
            life: Lifecycle::callee(now, no_answer_timeout, expires),
            reoffer: Reoffers::new(false),
            media: Media::callee(offered),
            peer_allows_update: false,
        }
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.life.state()
    }

    /// The lifecycle machine.
    pub fn life(&self) -> &Lifecycle<I> {
        &self.life
    }

    /// The lifecycle machine, to tell it what happened.
    pub fn life_mut(&mut self) -> &mut Lifecycle<I> {
        &mut self.life
    }

    /// The offer/answer state and the media handler's asks.
    pub fn media(&self) -> &Media {
        &self.media
    }

    /// The media machine, to tell it what was sent and received and to drain its asks.
    pub fn media_mut(&mut self) -> &mut Media {
        &mut self.media
    }

    /// Our re-offers.
    pub fn reoffers(&self) -> &Reoffers<I, T> {
        &self.reoffer
    }

    /// Our re-offers, to say one was sent or not.
    pub fn reoffers_mut(&mut self) -> &mut Reoffers<I, T> {
        &mut self.reoffer
    }

    /// When [`Session::handle_timeout`] is next wanted.
    pub fn poll_timeout(&self) -> Option<I> {
        match (self.life.poll_timeout(), self.reoffer.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time has come to `now`. If it ended the session (the session timer expired), a
    /// waiting re-offer of ours is ended by the next [`Session::end_reoffers`], which the
    /// driver calls past established, so that whoever asked for it hears why.
    pub fn handle_timeout(&mut self, now: I) {
        self.life.handle_timeout(now);
        self.reoffer.handle_timeout(now);
    }

    /// Whether [`Session::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        self.life.has_events() || self.reoffer.has_events()
    }

    /// The next thing to do, if any: the lifecycle's first.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.life.poll_event() {
            return Some(Event::Life(e));
        }
        self.reoffer.poll_event().map(Event::Reoffer)
    }

    /// Moves to `to` if the lifecycle allows it (forward only); past established, a
    /// re-offer of ours that waits (for its retry or for the ACK) will not go: its kind is
    /// returned, for whoever asked for it to hear so.
    pub fn advance(&mut self, to: SessionState) -> (bool, Option<Kind>) {
        let moved = self.life.advance(to);
        (moved, self.settle())
    }

    /// The session has ended; see [`Session::advance`].
    pub fn terminate(&mut self) -> Option<Kind> {
        self.advance(SessionState::Terminated).1
    }

    /// Past established, a waiting re-offer ends (one on the wire still gets its response).
    fn settle(&mut self) -> Option<Kind> {
        if self.life.state() > SessionState::Established {
            self.reoffer.end()
        } else {
            None
        }
    }

    /// Ends a waiting re-offer of ours whatever the state (the ACK it was held for never
    /// came, say): its kind, if one waited.
    pub fn end_reoffers(&mut self) -> Option<Kind> {
        self.reoffer.end()
    }

    /// The ACK of our 2xx never came (RFC 3261 §13.3.1.4): the session ends, and a re-offer
    /// held for that ACK with it (its kind returned).
    pub fn handle_ack_timeout(&mut self) -> Option<Kind> {
        // (the lifecycle ends the session itself)
        self.life.handle_ack_timeout();
        self.reoffer.end()
    }

    /// The ACK of our 2xx came, with a body or without (`body`) (RFC 3261 §13.3.1.4,
    /// RFC 3264 §5). `None`: no ACK was awaited (a retransmission, or one after its
    /// timeout), nothing to do. Else whether it answers our 2xx's offer (`Ok(true)`: the
    /// answer is then among the media's asks), or the error when it owed that answer and
    /// lacks it (the exchange is rolled back: the session cannot go on). Once the asks are
    /// done, [`Session::acked`].
    pub fn handle_ack(&mut self, body: bool) -> Option<Result<bool, OfferAnswerError>> {
        if !self.life.handle_ack() {
            return None;
        }
        if self.media.state() != OfferAnswer::LocalOffer(Message::Success) {
            return Some(Ok(false));
        }
        Some(self.media.received(Message::Ack, body).map(|_| true))
    }

    /// The ACK [`Session::handle_ack`] took is done with (its answer applied): the media
    /// hears the dialog is confirmed, and a re-offer held for this ACK may be asked for
    /// again ([`reoffer::Event::Release`]).
    pub fn acked(&mut self) {
        self.media.confirm();
        self.reoffer.handle_ack();
    }

    /// Our 2xx made an offer whose answer comes in the ACK, not here yet.
    pub fn answer_awaits_ack(&self) -> bool {
        self.life.awaiting_ack() && self.media.state() == OfferAnswer::LocalOffer(Message::Success)
    }

    /// The application (or the session timer) asks for a re-offer of `kind` (`offers`: with
    /// a body): send it, hold it for the ACK, or refuse it as pending.
    pub fn ask_reoffer(&mut self, kind: Kind, offers: bool) -> Ask {
        let after_ack = self.answer_awaits_ack();
        self.reoffer.ask(kind, offers, after_ack)
    }

    /// Our re-offer in transaction `id` got no response: forgotten, and its offer (if it
    /// made one) refused, so that the media goes back to what it was. Its kind, if it was
    /// ours.
    pub fn reoffer_failed(&mut self, id: T) -> Option<Kind> {
        let kind = self.reoffer.handle_failure(id)?;
        self.media.refused(message_of(kind));
        Some(kind)
    }

    /// The peer's allowed methods as its INVITE or 2xx listed them (RFC 3261 §20.5).
    pub fn set_peer_allows_update(&mut self, allows: bool) {
        self.peer_allows_update = allows;
    }

    /// The session timer asks for a refresh at `now` ([`lifecycle::Event::Refresh`]): in
    /// what (an UPDATE without a body when the peer allows it, else a re-INVITE), or `None`
    /// when an exchange is under way, and then it is put off a second.
    pub fn refresh(&mut self, now: I) -> Option<Kind> {
        self.life.timer()?;
        let kind = self
            .reoffer
            .refresh(self.media.can_offer(), self.peer_allows_update);
        if kind.is_none() {
            self.life.postpone_refresh(now + REFRESH_RETRY);
        }
        kind
    }

    /// The peer's re-INVITE or UPDATE `request` refreshed the session at `now` (RFC 4028
    /// §9): it refreshes from now on if it supports timers, else we still do. The header for
    /// our 2xx, when a timer runs.
    pub fn refreshed_by_peer(&mut self, request: &Request, now: I) -> Option<Header> {
        let t = self.life.timer()?;
        let (interval, we_refresh, header) = timer::answer_refresh(request, t.interval);
        self.life.start_timer(interval, we_refresh, now);
        Some(header)
    }

    /// Our re-INVITE or UPDATE was answered 2xx at `now` (RFC 4028 §10): the session is
    /// refreshed, on the terms the 2xx states (else ours, still refreshed by us).
    pub fn refreshed_by_us(&mut self, response: &Response, now: I) {
        let Some(t) = self.life.timer() else { return };
        let (interval, we) = timer::from_answer(response).unwrap_or((t.interval, true));
        self.life.start_timer(interval, we, now);
    }

    /// A re-INVITE (`invite`) or UPDATE from the peer, with an offer or without
    /// (`offered`): taken by the negotiation (then [`Media::respond`] says what our 2xx
    /// carries), or refused as the response must say (RFC 3261 §14.2, RFC 3311 §5.2).
    pub fn peer_offer(
        &mut self,
        invite: bool,
        offered: bool,
        rng: &mut Rng,
    ) -> Result<(), Refusal> {
        let m = if invite {
            Message::Invite
        } else {
            Message::Update
        };
        match self.media.received(m, offered) {
            Ok(_) => Ok(()),
            Err(why) => Err(match why {
                OfferAnswerError::Glare => Refusal {
                    status: 491,
                    retry_after: None,
                    why,
                },
                OfferAnswerError::Pending
                | OfferAnswerError::Unexpected
                | OfferAnswerError::Missing => Refusal {
                    status: 500,
                    retry_after: Some((rng.next_u64() % 11) as u32),
                    why,
                },
            }),
        }
    }

    /// Whether the session has nothing left to do of its own: ended, and no re-INVITE of
    /// ours still waits for its 2xx (which wants its ACK).
    pub fn done(&self) -> bool {
        self.life.state() == SessionState::Terminated
            && self.reoffer.in_flight() != Some(Kind::ReInvite)
    }
}

/// The message a re-offer of `kind` goes in.
fn message_of(kind: Kind) -> Message {
    match kind {
        Kind::ReInvite => Message::Invite,
        Kind::Update => Message::Update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type S = Session<Duration, u32>;

    fn established() -> S {
        let mut s = S::caller();
        s.media_mut().offer(Message::Invite).unwrap();
        while s.media_mut().poll_ask().is_some() {}
        s.media_mut().sent(Message::Invite, true);
        s.advance(SessionState::Establishing);
        s.media_mut().received(Message::Success, true).unwrap();
        while s.media_mut().poll_ask().is_some() {}
        s.media_mut().confirm();
        while s.media_mut().poll_ask().is_some() {}
        s.advance(SessionState::Established);
        s
    }

    #[test]
    fn a_refused_re_invite_waits_out_its_back_off_and_ends_with_the_session() {
        let mut s = established();
        let mut rng = Rng::new(7);
        assert_eq!(s.ask_reoffer(Kind::ReInvite, true), Ask::Send);
        s.reoffers_mut().sent(Kind::ReInvite, 1);
        let o = s
            .reoffers_mut()
            .handle_response(1, 491, None, Duration::ZERO, &mut rng);
        assert_eq!(o, Some(reoffer::Outcome::Retrying));
        let at = s.poll_timeout().expect("the back-off's end");
        assert!(at > Duration::ZERO && at <= Duration::from_secs(4));
        // another may not start meanwhile
        assert_eq!(s.ask_reoffer(Kind::Update, true), Ask::Busy);
        s.handle_timeout(at);
        assert_eq!(s.poll_event(), Some(Event::Reoffer(reoffer::Event::Retry)));
        // sent again, refused again; the session ends during the back-off: it will not go
        s.reoffers_mut().sent(Kind::ReInvite, 2);
        s.reoffers_mut().handle_response(2, 491, None, at, &mut rng);
        assert_eq!(s.terminate(), Some(Kind::ReInvite));
        assert_eq!(s.poll_timeout(), None);
        assert!(s.done());
    }

    #[test]
    fn a_peer_s_offer_during_ours_is_glare_and_during_its_own_is_pending() {
        let mut rng = Rng::new(1);
        let mut s = established();
        s.media_mut().offer(Message::Update).unwrap();
        while s.media_mut().poll_ask().is_some() {}
        s.media_mut().sent(Message::Update, true);
        let r = s.peer_offer(true, true, &mut rng).unwrap_err();
        assert_eq!((r.status, r.retry_after), (491, None));

        let mut s = established();
        s.peer_offer(false, true, &mut rng).unwrap();
        for _ in 0..50 {
            let r = s.peer_offer(true, true, &mut rng).unwrap_err();
            assert_eq!(r.status, 500);
            assert!(r.retry_after.is_some_and(|s| s <= 10));
        }
    }

    #[test]
    fn a_refresh_waits_for_an_open_exchange_and_then_goes_as_update_if_allowed() {
        let mut s = established();
        assert_eq!(s.refresh(Duration::ZERO), None, "no timer runs");
        s.life_mut().start_timer(90, true, Duration::ZERO);
        s.set_peer_allows_update(true);
        // an offer of ours is out: a second later
        s.media_mut().offer(Message::Update).unwrap();
        while s.media_mut().poll_ask().is_some() {}
        s.media_mut().sent(Message::Update, true);
        let now = Duration::from_secs(45);
        assert_eq!(s.refresh(now), None);
        assert_eq!(s.life().timer().unwrap().at, now + REFRESH_RETRY);
        s.media_mut().refused(Message::Update);
        while s.media_mut().poll_ask().is_some() {}
        assert_eq!(s.refresh(now + REFRESH_RETRY), Some(Kind::Update));
        s.set_peer_allows_update(false);
        assert_eq!(s.refresh(now + REFRESH_RETRY), Some(Kind::ReInvite));
    }

    #[test]
    fn a_failed_re_offer_gives_the_media_back() {
        let mut s = established();
        assert_eq!(s.ask_reoffer(Kind::Update, true), Ask::Send);
        s.media_mut().offer(Message::Update).unwrap();
        while s.media_mut().poll_ask().is_some() {}
        s.media_mut().sent(Message::Update, true);
        s.reoffers_mut().sent(Kind::Update, 9);
        assert_eq!(s.reoffer_failed(8), None, "not ours");
        assert_eq!(s.reoffer_failed(9), Some(Kind::Update));
        assert_eq!(s.media().state(), OfferAnswer::Stable);
        assert!(!s.reoffers().busy());
    }
}
