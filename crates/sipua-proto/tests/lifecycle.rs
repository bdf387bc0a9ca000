//! Property test of the session's lifecycle machine (`sipua_proto::session::lifecycle`):
//! for thousands of seeds, a caller or callee session takes a random sequence of inputs
//! (answers sent, ACKs, the ACK's timeout, BYEs asked for, glare retries, session timers,
//! postponed refreshes, time passing by random steps, and any of them out of place), with
//! the events it emits handled as the async session task handles them. Then both sides stop:
//! the session is hung up however its state allows, and time runs on. Checked:
//! - no step panics, the state never moves back, and only an unanswered callee may answer;
//! - `handle_timeout` at `poll_timeout` always makes progress (no timer that fires forever);
//! - an ended session asks for no time and emits nothing new, bar the fate of a held BYE;
//! - every BYE held for the ACK (`Bye::AfterAck`) comes out exactly once, as `SendBye` or
//!   `ByeAbandoned`;
//! - once both sides stop, every session ends in `Terminated`.

use std::time::Duration;

use sipua_proto::rng::Rng;
use sipua_proto::session::lifecycle::{Bye, Cancel, Event, Lifecycle, SessionState};

/// Virtual time: the machine takes any instant type, and a `Duration` since the start is one.
type T = Duration;

fn ms(n: u64) -> T {
    Duration::from_millis(n)
}

/// One session under test, with what the pump (the async task) would keep.
struct Run {
    life: Lifecycle<T>,
    now: T,
    caller: bool,
    /// BYEs held for the ACK and not yet released or abandoned.
    held: u32,
    released: u32,
    abandoned: u32,
    log: Vec<String>,
}

impl Run {
    fn new(rng: &mut Rng) -> Run {
        let caller = rng.next_u64().is_multiple_of(2);
        let life = if caller {
            Lifecycle::caller()
        } else {
            let expires = (rng.next_u64().is_multiple_of(3)).then(|| (rng.next_u64() % 120) as u32);
            Lifecycle::callee(ms(0), Duration::from_secs(1 + rng.next_u64() % 90), expires)
        };
        Run {
            life,
            now: ms(0),
            caller,
            held: 0,
            released: 0,
            abandoned: 0,
            log: Vec::new(),
        }
    }

    /// Moves the state and checks it only went forward.
    fn check_forward<R>(&mut self, what: &str, f: impl FnOnce(&mut Lifecycle<T>) -> R) -> R {
        let (before, answered) = (self.life.state(), self.life.answered());
        let r = f(&mut self.life);
        self.log.push(format!("{what} -> {:?}", self.life.state()));
        assert!(self.life.state() >= before, "moved back: {:#?}", self.log);
        // only an unanswered callee's INVITE, before the end, may be answered, and once
        if self.life.may_answer() {
            assert!(
                !self.caller && !answered && self.life.state() <= SessionState::Establishing,
                "{:#?}",
                self.log
            );
        }
        r
    }

    /// Handles every pending event as the session task does.
    fn pump(&mut self) {
        let mut seen = 0;
        while let Some(e) = self.life.poll_event() {
            seen += 1;
            assert!(
                seen <= 6,
                "an event queue that does not drain: {:#?}",
                self.log
            );
            self.log.push(format!("event {e:?}"));
            match e {
                Event::AnswerTimeout(status) => {
                    assert!(!self.caller && matches!(status, 480 | 487));
                    // asked once: the deadline is gone even before the response goes
                    assert!(
                        self.life.poll_timeout().is_none_or(|at| at > self.now),
                        "{:#?}",
                        self.log
                    );
                    // the task rejects the INVITE: a final response, the end
                    self.check_forward("reject", |l| {
                        l.final_sent(false);
                        l.advance(SessionState::Terminated)
                    });
                }
                Event::SendBye => {
                    assert!(self.held > 0, "a BYE released that was never held");
                    self.held -= 1;
                    self.released += 1;
                    assert_eq!(self.life.state(), SessionState::Terminated);
                }
                Event::ByeAbandoned => {
                    assert!(self.held > 0, "a BYE abandoned that was never held");
                    self.held -= 1;
                    self.abandoned += 1;
                    assert_eq!(self.life.state(), SessionState::Terminated);
                }
                Event::Expired => assert_eq!(self.life.state(), SessionState::Terminated),
                Event::Refresh => {
                    assert_eq!(self.life.state(), SessionState::Established)
                }
            }
        }
    }

    /// Lets time run to the next deadline (or a random step), checking it makes progress.
    fn tick(&mut self, rng: &mut Rng) {
        let step = self.now + ms(rng.next_u64() % 40_000);
        let to = match self.life.poll_timeout() {
            Some(at) if at <= step => at.max(self.now),
            _ => step,
        };
        self.now = to;
        let due = self.life.poll_timeout().is_some_and(|at| at <= to);
        self.check_forward("tick", |l| l.handle_timeout(to));
        if due {
            let fired = self.life.has_events();
            let moved = self.life.poll_timeout().is_none_or(|at| at > to);
            assert!(
                fired || moved,
                "a timer that fires forever: {:#?}",
                self.log
            );
        }
        self.pump();
    }

    fn step(&mut self, rng: &mut Rng) {
        let ended = self.life.state() == SessionState::Terminated;
        match rng.next_u64() % 13 {
            0 | 1 => self.tick(rng),
            2 => {
                let to = [
                    SessionState::Establishing,
                    SessionState::Established,
                    SessionState::Terminating,
                    SessionState::Terminated,
                ][(rng.next_u64() % 4) as usize];
                // a caller's provisional or 2xx, a CANCEL sent, a remote BYE or failure
                self.check_forward("advance", |l| l.advance(to));
            }
            3 => {
                let ok = rng.next_u64().is_multiple_of(2);
                self.check_forward("final_sent", |l| l.final_sent(ok));
            }
            4 => {
                self.check_forward("ack", |l| l.handle_ack());
            }
            5 => {
                self.check_forward("ack timeout", |l| l.handle_ack_timeout());
            }
            6 | 7 => match self.check_forward("bye", |l| l.request_bye()) {
                Bye::AfterAck => self.held += 1,
                Bye::Now | Bye::Refused(_) => {}
            },
            9 => {
                let interval = 90 + (rng.next_u64() % 1800) as u32;
                let we = rng.next_u64().is_multiple_of(2);
                let now = self.now;
                self.check_forward("start_timer", |l| l.start_timer(interval, we, now));
            }
            10 => {
                let at = self.now + ms(1_000);
                self.check_forward("postpone", |l| l.postpone_refresh(at));
            }
            8 | 11 => self.check_forward("reinvite answered", |l| l.reinvite_answered()),
            _ => {
                let (state, cancelled) = (self.life.state(), self.life.cancelled());
                match self.check_forward("cancel", |l| l.request_cancel()) {
                    Cancel::Send => {
                        assert!(self.caller && state == SessionState::Establishing && !cancelled);
                        assert_eq!(self.life.state(), SessionState::Terminating);
                    }
                    Cancel::Ended => {
                        assert!(self.caller && state == SessionState::Initial);
                        assert_eq!(self.life.state(), SessionState::Terminated);
                    }
                    Cancel::Refused(s) => assert_eq!(s, self.life.state()),
                }
            }
        }
        self.pump();
        if ended {
            assert_eq!(self.life.state(), SessionState::Terminated);
            assert_eq!(self.life.poll_timeout(), None, "{:#?}", self.log);
        }
    }

    /// Both sides stop: the session is hung up as its state allows, the ACK comes or times
    /// out, and time runs on.
    fn stop(&mut self, rng: &mut Rng) {
        for _ in 0..20 {
            match self.life.state() {
                SessionState::Terminated => break,
                SessionState::Established => {
                    if let Bye::AfterAck = self.check_forward("bye", |l| l.request_bye()) {
                        self.held += 1;
                    }
                }
                SessionState::Terminating => {
                    if rng.next_u64().is_multiple_of(2) {
                        self.check_forward("ack", |l| l.handle_ack());
                    } else {
                        self.check_forward("ack timeout", |l| l.handle_ack_timeout());
                    }
                    // a CANCEL's 487, or the BYE's answer
                    self.check_forward("ended", |l| l.advance(SessionState::Terminated));
                }
                SessionState::Initial | SessionState::Establishing if self.caller => {
                    // CANCEL, then its 487 (a CANCEL sent already: only the 487)
                    if let Cancel::Refused(_) = self.check_forward("cancel", |l| l.request_cancel())
                    {
                        self.check_forward("487", |l| l.advance(SessionState::Terminated));
                    }
                }
                SessionState::Initial | SessionState::Establishing => {
                    if self.life.answered() {
                        // a final response went while the state lagged: the INVITE is over
                        self.check_forward("ended", |l| l.advance(SessionState::Terminated));
                    }
                }
            }
            self.pump();
            self.tick(rng);
        }
        // an unanswered callee waits for its timeout: run time out
        for _ in 0..10 {
            if self.life.state() == SessionState::Terminated {
                break;
            }
            self.now += ms(200_000);
            let now = self.now;
            self.check_forward("time", |l| l.handle_timeout(now));
            self.pump();
        }
        assert_eq!(
            self.life.state(),
            SessionState::Terminated,
            "not ended: {:#?}",
            self.log
        );
        assert_eq!(self.life.poll_timeout(), None);
        assert!(!self.life.has_events());
        assert_eq!(
            self.held, 0,
            "a held BYE neither sent nor abandoned: {:#?}",
            self.log
        );
    }
}

#[test]
fn random_inputs_never_move_back_and_every_session_ends_once_both_sides_stop() {
    let (mut released, mut abandoned, mut timeouts) = (0, 0, 0);
    for seed in 0..4_000u64 {
        let mut rng = Rng::new(seed ^ 0x11fe);
        let mut run = Run::new(&mut rng);
        let steps = 1 + rng.next_u64() % 40;
        for _ in 0..steps {
            run.step(&mut rng);
        }
        run.stop(&mut rng);
        released += run.released;
        abandoned += run.abandoned;
        timeouts += run
            .log
            .iter()
            .filter(|l| l.starts_with("event AnswerTimeout"))
            .count();
    }
    // the runs reached the rules under test
    assert!(released > 100, "{released} BYEs released by an ACK");
    assert!(abandoned > 100, "{abandoned} BYEs abandoned");
    assert!(timeouts > 100, "{timeouts} unanswered INVITEs timed out");
}
