//! Where an INVITE session is in its life, and what its clock asks for, with no I/O and no
//! clock of its own (RFC 3261 §13.3.1 and §15, RFC 4028 §10).
//!
//! [`Lifecycle`] holds the session's [`SessionState`] (SIP.js's, forward only) and every
//! rule that depends on time or on the ACK:
//! - the callee's unanswered INVITE ends with 480 after the no-answer timeout, or 487 once
//!   its `Expires` has passed (RFC 3261 §13.3.1);
//! - a callee does not send BYE before the ACK of its 2xx (RFC 3261 §15): a BYE asked for
//!   meanwhile waits, and goes when the ACK comes; if the ACK never comes the session ends;
//! - a caller cancels only an INVITE not finally answered (RFC 3261 §9.1), once; before the
//!   INVITE went, cancelling just ends the session; a 2xx that crosses the CANCEL does not
//!   bring the call back up (the caller ACKs it and says BYE);
//! - the session timer (RFC 4028 §10) refreshes at half its interval, or ends a session the
//!   peer stopped refreshing.
//!
//! Our re-offers, and when a refused one goes again (RFC 3261 §14.1), are
//! [`Reoffers`](super::reoffer::Reoffers)'.
//!
//! It is driven as the rest of the core is: inputs through its methods, with `now` given
//! where time matters; [`Lifecycle::poll_timeout`] says when it next wants
//! [`Lifecycle::handle_timeout`]; what the caller must do comes out of
//! [`Lifecycle::poll_event`]. The async session task is the pump: it sends what the events
//! ask for and keeps whatever the API's handles are waiting on.

use std::ops::Add;
use std::time::Duration;

use super::timer::Running;

/// Where a session is (SIP.js `SessionState`). Moves only forward:
/// `Initial → Establishing → Established → Terminating → Terminated`, skipping allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionState {
    /// Created; no INVITE sent or answered yet.
    Initial,
    /// INVITE sent (caller) or being answered (callee).
    Establishing,
    /// 2xx sent or received and acknowledged.
    Established,
    /// Ending: CANCEL sent, or BYE waiting for the ACK of our 2xx.
    Terminating,
    /// Over.
    Terminated,
}

/// What the session must do now, from [`Lifecycle::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The callee's INVITE was not answered in time: send this final response (480 after
    /// the no-answer timeout, 487 once the INVITE's `Expires` passed) and end.
    AnswerTimeout(u16),
    /// The ACK has come: the BYE that waited for it goes now; the session has ended.
    SendBye,
    /// The ACK never came: the BYE that waited for it will not be sent.
    ByeAbandoned,
    /// The session timer asks us to refresh (with an UPDATE or re-INVITE): the timer has
    /// been restarted; if an exchange is under way, call [`Lifecycle::postpone_refresh`].
    Refresh,
    /// The peer stopped refreshing: send BYE; the session has ended.
    Expired,
}

/// What to do with a BYE asked for, from [`Lifecycle::request_bye`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bye {
    /// Send it now; the session has ended.
    Now,
    /// Our 2xx waits for its ACK: hold the BYE until [`Event::SendBye`] (or
    /// [`Event::ByeAbandoned`]). The session is `Terminating`.
    AfterAck,
    /// Only an established session can say BYE; this is where it is.
    Refused(SessionState),
}

/// What to do with a CANCEL asked for, from [`Lifecycle::request_cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The INVITE has not gone: nothing to send; the session has ended.
    Ended,
    /// Send the CANCEL; the session is `Terminating` until the INVITE's final response
    /// (487, or a 2xx that crossed it: ACK it and say BYE).
    Send,
    /// Only a caller's INVITE not yet answered can be cancelled, once; this is where the
    /// session is.
    Refused(SessionState),
}

/// The callee's unanswered INVITE and when it times out.
#[derive(Debug, Clone, Copy)]
struct Unanswered<I> {
    no_answer: I,
    expires: Option<I>,
}

/// The events waiting to be polled, one bit each (an event is due or not: the same one
/// twice means nothing more), polled in this order. No allocation, whatever the input.
const SEND_BYE: u8 = 1;
const BYE_ABANDONED: u8 = 2;
const EXPIRED: u8 = 4;
const REFRESH: u8 = 8;
const ANSWER_TIMEOUT: u8 = 16;

/// An INVITE session's state and timers (see the module documentation). `I` is the
/// caller's instant type.
#[derive(Debug, Clone)]
pub struct Lifecycle<I> {
    state: SessionState,
    /// Our side sent the INVITE.
    caller: bool,
    /// The caller cancelled its INVITE.
    cancelled: bool,
    /// Callee: the INVITE's final response is still to be sent (`None` once it is, and
    /// always for a caller).
    unanswered: Option<Unanswered<I>>,
    /// Callee: the final response has been sent.
    answered: bool,
    /// Our 2xx waits for its ACK.
    awaiting_ack: bool,
    /// A BYE waits for that ACK.
    bye_after_ack: bool,
    /// The session timer, once negotiated.
    timer: Option<Running<I>>,
    /// The events due ([`SEND_BYE`] and the others).
    due: u8,
    /// The status of [`Event::AnswerTimeout`], when due.
    timeout_status: u16,
}

impl<I: Copy + Ord + Add<Duration, Output = I>> Lifecycle<I> {
    /// A caller's session, before its INVITE goes.
    pub fn caller() -> Lifecycle<I> {
        Lifecycle {
            state: SessionState::Initial,
            caller: true,
            cancelled: false,
            unanswered: None,
            answered: true,
            awaiting_ack: false,
            bye_after_ack: false,
            timer: None,
            due: 0,
            timeout_status: 0,
        }
    }

    /// A callee's session for an INVITE received at `now`: unanswered after
    /// `no_answer_timeout` it gets 480; with an `Expires` of `expires` seconds it gets 487
    /// once they pass, if that comes first.
    pub fn callee(now: I, no_answer_timeout: Duration, expires: Option<u32>) -> Lifecycle<I> {
        Lifecycle {
            unanswered: Some(Unanswered {
                no_answer: now + no_answer_timeout,
                expires: expires.map(|s| now + Duration::from_secs(u64::from(s))),
            }),
            answered: false,
            caller: false,
            ..Lifecycle::caller()
        }
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Moves to `to` if that is forward; returns whether the state changed.
    pub fn advance(&mut self, to: SessionState) -> bool {
        if to > self.state {
            self.state = to;
            if to == SessionState::Terminated {
                self.end();
            }
            true
        } else {
            false
        }
    }

    /// What is left to wait for once the session is over: nothing but what the caller
    /// still holds.
    fn end(&mut self) {
        self.unanswered = None;
        self.awaiting_ack = false;
        self.timer = None;
        if std::mem::take(&mut self.bye_after_ack) {
            self.due |= BYE_ABANDONED;
        }
    }

    /// Callee: whether the INVITE's final response has been sent.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Callee: whether the INVITE may still be answered (a provisional response, the 2xx or a
    /// refusal): its final response has not gone and the session has not ended. SIP.js's
    /// `accept()`, `progress()` and `reject()` are refused otherwise.
    pub fn may_answer(&self) -> bool {
        !self.caller && !self.answered && self.state <= SessionState::Establishing
    }

    /// Callee: the INVITE's final response has been sent (`success`: a 2xx, whose ACK is
    /// now awaited, and the session is established). No timeout applies any more.
    pub fn final_sent(&mut self, success: bool) {
        self.answered = true;
        self.unanswered = None;
        if success && self.state != SessionState::Terminated {
            self.awaiting_ack = true;
            self.advance(SessionState::Established);
        }
    }

    /// Our 2xx to a re-INVITE went: its ACK is awaited too.
    pub fn reinvite_answered(&mut self) {
        if self.state != SessionState::Terminated {
            self.awaiting_ack = true;
        }
    }

    /// Whether our 2xx waits for its ACK.
    pub fn awaiting_ack(&self) -> bool {
        self.awaiting_ack
    }

    /// The ACK of our 2xx came; returns whether one was awaited (a retransmitted or stray
    /// ACK changes nothing). A BYE that waited for it is released ([`Event::SendBye`]).
    pub fn handle_ack(&mut self) -> bool {
        if !std::mem::take(&mut self.awaiting_ack) {
            return false;
        }
        if std::mem::take(&mut self.bye_after_ack) {
            self.due |= SEND_BYE;
            self.advance(SessionState::Terminated);
        }
        true
    }

    /// The ACK of our 2xx never came (the core's timer H): the session is over
    /// (RFC 3261 §13.3.1.4), and a BYE that waited is abandoned.
    pub fn handle_ack_timeout(&mut self) {
        self.awaiting_ack = false;
        self.advance(SessionState::Terminated);
    }

    /// The application asks to hang up an established session (see [`Bye`]).
    #[must_use = "the BYE is the caller's to send, now or once the ACK has come"]
    pub fn request_bye(&mut self) -> Bye {
        if self.state != SessionState::Established {
            return Bye::Refused(self.state);
        }
        if self.awaiting_ack {
            self.bye_after_ack = true;
            self.state = SessionState::Terminating;
            return Bye::AfterAck;
        }
        self.advance(SessionState::Terminated);
        Bye::Now
    }

    /// The application asks to cancel the caller's INVITE (see [`Cancel`]).
    #[must_use = "the CANCEL is the caller's to send"]
    pub fn request_cancel(&mut self) -> Cancel {
        if !self.caller || self.cancelled {
            return Cancel::Refused(self.state);
        }
        match self.state {
            SessionState::Initial => {
                self.cancelled = true;
                self.advance(SessionState::Terminated);
                Cancel::Ended
            }
            SessionState::Establishing => {
                self.cancelled = true;
                self.advance(SessionState::Terminating);
                Cancel::Send
            }
            s => Cancel::Refused(s),
        }
    }

    /// Whether the caller cancelled: a 2xx that comes now crossed the CANCEL.
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// The session timer runs from `now`: `interval` seconds, refreshed by us or by the peer.
    pub fn start_timer(&mut self, interval: u32, we_refresh: bool, now: I) {
        if self.state < SessionState::Terminating {
            self.timer = Some(Running::start(interval, we_refresh, now));
        }
    }

    /// The session timer, if one runs.
    pub fn timer(&self) -> Option<Running<I>> {
        self.timer
    }

    /// An exchange was under way when [`Event::Refresh`] came: refresh at `at` instead.
    pub fn postpone_refresh(&mut self, at: I) {
        if let Some(t) = self.timer.as_mut() {
            t.at = at;
        }
    }

    /// When [`Lifecycle::handle_timeout`] is next wanted.
    pub fn poll_timeout(&self) -> Option<I> {
        let answer = self
            .unanswered
            .map(|u| u.expires.map_or(u.no_answer, |e| e.min(u.no_answer)));
        let timer = self
            .timer
            .filter(|_| self.state == SessionState::Established)
            .map(|t| t.at);
        answer.into_iter().chain(timer).min()
    }

    /// Time has come to `now`: whatever is due becomes an event.
    pub fn handle_timeout(&mut self, now: I) {
        if self.state == SessionState::Established {
            if let Some(t) = self.timer.filter(|t| t.at <= now) {
                if t.we_refresh {
                    self.timer = Some(Running::start(t.interval, true, now));
                    self.due |= REFRESH;
                } else {
                    self.advance(SessionState::Terminated);
                    self.due |= EXPIRED;
                }
            }
        }
        if let Some(u) = self.unanswered {
            let status = if u.expires.is_some_and(|e| e <= now) {
                Some(487)
            } else if u.no_answer <= now {
                Some(480)
            } else {
                None
            };
            if let Some(status) = status {
                // the response is the caller's to send: no second event meanwhile
                self.unanswered = None;
                self.timeout_status = status;
                self.due |= ANSWER_TIMEOUT;
            }
        }
    }

    /// Whether [`Lifecycle::poll_event`] has something.
    pub fn has_events(&self) -> bool {
        self.due != 0
    }

    /// The next thing to do, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.due == 0 {
            return None;
        }
        let bit = self.due & self.due.wrapping_neg(); // the lowest due
        self.due &= !bit;
        Some(match bit {
            SEND_BYE => Event::SendBye,
            BYE_ABANDONED => Event::ByeAbandoned,
            EXPIRED => Event::Expired,
            REFRESH => Event::Refresh,
            _ => Event::AnswerTimeout(self.timeout_status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Virtual time: a `Duration` since the start, in milliseconds.
    type T = Duration;

    fn ms(n: u64) -> T {
        Duration::from_millis(n)
    }

    fn events(l: &mut Lifecycle<T>) -> Vec<Event> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    #[test]
    fn an_unanswered_invite_gets_480_or_487_whichever_comes_first() {
        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        assert_eq!(l.poll_timeout(), Some(ms(60_000)));
        l.handle_timeout(ms(59_999));
        assert!(events(&mut l).is_empty());
        l.handle_timeout(ms(60_000));
        assert_eq!(events(&mut l), [Event::AnswerTimeout(480)]);
        assert_eq!(l.poll_timeout(), None, "asked once");

        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), Some(5));
        assert_eq!(l.poll_timeout(), Some(ms(5_000)));
        l.handle_timeout(ms(5_000));
        assert_eq!(events(&mut l), [Event::AnswerTimeout(487)]);

        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), Some(5));
        assert!(l.may_answer());
        l.final_sent(false);
        assert_eq!(l.poll_timeout(), None, "answered: no timeout");
        assert!(!l.may_answer(), "answered once");
        assert!(
            !Lifecycle::<T>::caller().may_answer(),
            "a caller answers nothing"
        );
        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        l.advance(SessionState::Terminated);
        assert!(!l.may_answer(), "ended");
    }

    #[test]
    fn a_bye_before_the_ack_waits_for_it_and_is_abandoned_without_it() {
        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        assert_eq!(l.request_bye(), Bye::Refused(SessionState::Initial));
        l.advance(SessionState::Establishing);
        l.final_sent(true);
        assert_eq!(l.state(), SessionState::Established);
        assert_eq!(l.request_bye(), Bye::AfterAck);
        assert_eq!(l.state(), SessionState::Terminating);
        assert!(events(&mut l).is_empty());
        assert!(l.handle_ack());
        assert_eq!(events(&mut l), [Event::SendBye]);
        assert_eq!(l.state(), SessionState::Terminated);
        assert!(!l.handle_ack(), "a retransmitted ACK changes nothing");

        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        l.final_sent(true);
        assert_eq!(l.request_bye(), Bye::AfterAck);
        l.handle_ack_timeout();
        assert_eq!(l.state(), SessionState::Terminated);
        assert_eq!(events(&mut l), [Event::ByeAbandoned]);
    }

    #[test]
    fn a_bye_after_the_ack_goes_at_once() {
        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        l.final_sent(true);
        assert!(l.handle_ack());
        assert_eq!(l.request_bye(), Bye::Now);
        assert_eq!(l.state(), SessionState::Terminated);
        assert_eq!(l.request_bye(), Bye::Refused(SessionState::Terminated));
    }

    #[test]
    fn the_session_timer_refreshes_at_half_and_ends_an_unrefreshed_session() {
        let mut l = Lifecycle::<T>::caller();
        l.advance(SessionState::Established);
        l.start_timer(90, true, ms(0));
        assert_eq!(l.poll_timeout(), Some(ms(45_000)));
        l.handle_timeout(ms(45_000));
        assert_eq!(events(&mut l), [Event::Refresh]);
        assert_eq!(l.poll_timeout(), Some(ms(90_000)), "restarted");
        l.postpone_refresh(ms(46_000));
        assert_eq!(l.poll_timeout(), Some(ms(46_000)));

        // the peer refreshes: we end the session 30 s (a third of 90) before it expires
        l.start_timer(90, false, ms(50_000));
        assert_eq!(l.poll_timeout(), Some(ms(110_000)));
        l.handle_timeout(ms(110_000));
        assert_eq!(events(&mut l), [Event::Expired]);
        assert_eq!(l.state(), SessionState::Terminated);
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn a_caller_cancels_once_and_only_before_the_answer() {
        let mut l = Lifecycle::<T>::caller();
        assert_eq!(l.request_cancel(), Cancel::Ended, "nothing sent yet");
        assert_eq!(l.state(), SessionState::Terminated);

        let mut l = Lifecycle::<T>::caller();
        l.advance(SessionState::Establishing);
        assert_eq!(l.request_cancel(), Cancel::Send);
        assert_eq!(l.state(), SessionState::Terminating);
        assert!(l.cancelled());
        assert_eq!(
            l.request_cancel(),
            Cancel::Refused(SessionState::Terminating),
            "once"
        );
        assert!(!l.advance(SessionState::Established), "the 2xx crossed it");

        let mut l = Lifecycle::<T>::caller();
        l.advance(SessionState::Established);
        assert_eq!(
            l.request_cancel(),
            Cancel::Refused(SessionState::Established)
        );
        let mut l = Lifecycle::callee(ms(0), Duration::from_secs(60), None);
        l.advance(SessionState::Establishing);
        assert_eq!(
            l.request_cancel(),
            Cancel::Refused(SessionState::Establishing),
            "a callee rejects"
        );
    }

    #[test]
    fn the_state_only_moves_forward() {
        let mut l = Lifecycle::<T>::caller();
        assert!(l.advance(SessionState::Established));
        assert!(!l.advance(SessionState::Establishing));
        assert_eq!(l.state(), SessionState::Established);
    }
}
