//! Property test of the session's machines as one (`sipua_proto::session::Session`): for
//! thousands of seeds, a caller's or a callee's session is driven by a rogue driver that
//! calls any entry point in any order, as the async session task would and as it would not:
//! state moves, final responses, ACKs and their timeout, BYE and CANCEL asked for, session
//! timers started, offers and answers sent and received in any message, re-offers asked
//! for, sent, answered with any status or failed, refreshes, the peer's offers, time passing
//! by random steps, and the session ended at a random point. After every step the driver
//! does what the task does: past established it ends a waiting re-offer, it drains the media
//! asks and the events (a retry goes again or does not). Checked:
//! - nothing panics, and the state only moves forward;
//! - the machine never asks to be woken in the past: after `handle_timeout(now)` its next
//!   timeout is later than `now` (a task would spin otherwise);
//! - past established no re-offer of ours waits (for a retry or for an ACK); only one on
//!   the wire may still get its response;
//! - the ACK is said to carry our offer's answer only while an ACK is awaited;
//! - a refusal of the peer's offer is 491 exactly on glare, else 500 with a Retry-After of
//!   at most 10 s;
//! - once the session has ended and our last re-offer on the wire has its response, the
//!   machine is done and nothing it holds wants a timer.

use std::time::Duration;

use sipua_proto::rng::Rng;
use sipua_proto::session::lifecycle::SessionState;
use sipua_proto::session::machine::{Event, Session};
use sipua_proto::session::reoffer::{self, Ask, Kind};
use sipua_proto::session::{Message, OfferAnswerError};

type S = Session<Duration, u32>;

const STATES: [SessionState; 5] = [
    SessionState::Initial,
    SessionState::Establishing,
    SessionState::Established,
    SessionState::Terminating,
    SessionState::Terminated,
];

struct Run {
    s: S,
    rng: Rng,
    now: Duration,
    /// Our re-offer on the wire, by transaction.
    wire: Option<(u32, Kind)>,
    next_id: u32,
    log: Vec<String>,
}

impl Run {
    fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[(self.rng.next_u64() % of.len() as u64) as usize]
    }

    fn coin(&mut self) -> bool {
        self.rng.next_u64().is_multiple_of(2)
    }

    /// Does what the media machine asks, failing one ask in eight as a handler may.
    fn asks(&mut self) {
        let mut n = 0;
        while self.s.media_mut().poll_ask().is_some() {
            n += 1;
            assert!(n < 16, "the media machine keeps asking: {:?}", self.log);
            if self.rng.next_u64().is_multiple_of(8) {
                self.s.media_mut().failed();
            }
        }
    }

    /// What the task does after every input: end a waiting re-offer past established, do
    /// the media's asks and the machine's events.
    fn settle(&mut self) {
        if self.s.state() > SessionState::Established {
            self.s.end_reoffers();
        }
        self.asks();
        let mut n = 0;
        while let Some(e) = self.s.poll_event() {
            n += 1;
            assert!(n < 16, "the machine keeps asking: {:?}", self.log);
            self.log.push(format!("event {e:?}"));
            match e {
                Event::Reoffer(reoffer::Event::Retry) if self.coin() => {
                    let id = self.id();
                    self.s.reoffers_mut().sent(Kind::ReInvite, id);
                    self.wire = Some((id, Kind::ReInvite));
                }
                Event::Reoffer(_) => self.s.reoffers_mut().not_sent(),
                Event::Life(_) => {}
            }
        }
        if self
            .wire
            .is_some_and(|(id, _)| self.s.reoffers().sent_in(id).is_none())
        {
            self.wire = None;
        }
        self.check();
    }

    /// Our re-offer's transaction on the wire, or one that is not ours.
    fn some_id(&mut self) -> u32 {
        let coin = self.coin();
        match self.wire {
            Some((id, _)) if coin => id,
            _ => self.rng.next_u64() as u32,
        }
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn check(&self) {
        if self.s.state() > SessionState::Established {
            assert!(
                !self.s.reoffers().busy() || self.s.reoffers().in_flight().is_some(),
                "a re-offer waits past established: {:?}",
                self.log
            );
        }
        if self.s.answer_awaits_ack() {
            assert!(self.s.life().awaiting_ack(), "{:?}", self.log);
        }
    }

    fn step(&mut self) {
        let before = self.s.state();
        // the session ends (ops 16 and 19, and 0 at times) in one step in forty: the rest
        // weighs the established session's offers and re-offers
        const MORE: [u64; 20] = [
            7, 8, 9, 11, 12, 13, 14, 15, 17, 2, 5, 1, 6, 10, 11, 12, 17, 9, 7, 14,
        ];
        let op = match self.rng.next_u64() % 40 {
            x if x < 20 => x,
            x => MORE[(x - 20) as usize],
        };
        self.log.push(format!("op {op} in {before:?}"));
        match op {
            0 => {
                // mostly one step forward, at times anywhere
                let next = STATES.iter().copied().find(|s| *s > before);
                let to = match next {
                    Some(n) if self.coin() => n,
                    _ => self.pick(&STATES),
                };
                self.s.advance(to);
            }
            1 => {
                let ok = self.coin();
                self.s.life_mut().final_sent(ok);
            }
            2 => {
                let body = self.coin();
                let awaited = self.s.life().awaiting_ack();
                let answers = self.s.answer_awaits_ack();
                match self.s.handle_ack(body) {
                    None => assert!(!awaited, "an awaited ACK ignored: {:?}", self.log),
                    Some(taken) => {
                        assert_eq!(taken.is_ok_and(|a| a), answers && body, "{:?}", self.log);
                        self.asks();
                        if taken.is_ok() {
                            self.s.acked();
                        }
                    }
                }
                assert!(!self.s.life().awaiting_ack());
            }
            3 => {
                let _ = self.s.life_mut().request_bye();
            }
            4 => {
                let _ = self.s.life_mut().request_cancel();
            }
            5 => {
                let interval = 90 + (self.rng.next_u64() % 1800) as u32;
                let we = self.coin();
                let now = self.now;
                self.s.life_mut().start_timer(interval, we, now);
            }
            6 => self.s.life_mut().reinvite_answered(),
            7 => {
                let m = self.pick(&Message::ALL);
                if self.s.media_mut().offer(m).is_ok() {
                    self.asks();
                    if self.coin() {
                        self.s.media_mut().sent(m, true);
                    } else {
                        self.s.media_mut().not_sent();
                    }
                }
            }
            8 => {
                let m = self.pick(&Message::ALL);
                let body = self.coin();
                let _ = self.s.media_mut().received(m, body);
            }
            9 => {
                let m = self.pick(&Message::ALL);
                self.s.media_mut().respond(m);
                self.asks();
                let body = self.coin();
                self.s.media_mut().sent(m, body);
            }
            10 => {
                let m = self.pick(&Message::ALL);
                if self.coin() {
                    self.s.media_mut().refused(m);
                } else {
                    self.s.media_mut().confirm();
                }
            }
            11 => {
                let kind = self.pick(&[Kind::ReInvite, Kind::Update]);
                let offers = self.coin();
                match self.s.ask_reoffer(kind, offers) {
                    Ask::Send if self.coin() => {
                        let id = self.id();
                        self.s.reoffers_mut().sent(kind, id);
                        self.wire = Some((id, kind));
                    }
                    Ask::Send => self.s.reoffers_mut().not_sent(),
                    Ask::AfterAck | Ask::Busy => {}
                }
            }
            12 => {
                let id = self.some_id();
                let status = self.pick(&[200, 200, 491, 500, 486, 408, 481]);
                let after = self.pick(&[None, Some(0), Some(3), Some(60)]);
                let now = self.now;
                let mut rng = Rng::new(self.rng.next_u64());
                self.s
                    .reoffers_mut()
                    .handle_response(id, status, after, now, &mut rng);
            }
            13 => {
                let id = self.some_id();
                let ours = self.s.reoffers().sent_in(id);
                assert_eq!(self.s.reoffer_failed(id), ours, "{:?}", self.log);
                assert!(self.s.reoffers().sent_in(id).is_none());
            }
            14 => {
                let now = self.now;
                if let Some(kind) = self.s.refresh(now) {
                    assert!(!self.s.reoffers().busy() && self.s.media().can_offer());
                    if self.s.ask_reoffer(kind, kind == Kind::ReInvite) == Ask::Send {
                        let id = self.id();
                        self.s.reoffers_mut().sent(kind, id);
                        self.wire = Some((id, kind));
                    }
                }
            }
            15 => {
                let invite = self.coin();
                let offered = self.coin();
                let mut rng = Rng::new(self.rng.next_u64());
                if let Err(r) = self.s.peer_offer(invite, offered, &mut rng) {
                    let glare = r.why == OfferAnswerError::Glare;
                    assert_eq!(r.status, if glare { 491 } else { 500 }, "{:?}", self.log);
                    assert_eq!(r.retry_after.is_some(), !glare);
                    assert!(r.retry_after.is_none_or(|s| s <= 10));
                }
            }
            16 => {
                let waiting = self.s.reoffers().busy() && self.s.reoffers().in_flight().is_none();
                assert_eq!(
                    self.s.handle_ack_timeout().is_some(),
                    waiting,
                    "a waiting re-offer ends with the ACK's timeout: {:?}",
                    self.log
                );
                assert_eq!(self.s.state(), SessionState::Terminated);
            }
            17 | 18 => {
                self.now += Duration::from_millis(self.rng.next_u64() % 5_000);
                if self.coin() {
                    if let Some(at) = self.s.poll_timeout() {
                        self.now = self.now.max(at);
                    }
                }
                let now = self.now;
                self.s.handle_timeout(now);
                assert!(
                    self.s.poll_timeout().is_none_or(|at| at > now),
                    "woken in the past: {:?}",
                    self.log
                );
            }
            _ => {
                self.s.terminate();
                assert_eq!(self.s.state(), SessionState::Terminated);
            }
        }
        assert!(
            self.s.state() >= before,
            "the state went back: {:?}",
            self.log
        );
        self.settle();
    }
}

#[test]
fn any_driving_of_the_session_keeps_its_rules_and_ends_done() {
    for seed in 0..10_000u64 {
        let mut rng = Rng::new(seed);
        let callee = rng.next_u64().is_multiple_of(2);
        let s = if callee {
            let offered = rng.next_u64().is_multiple_of(2);
            let expires = rng.next_u64().is_multiple_of(3).then_some(60);
            S::callee(Duration::ZERO, Duration::from_secs(120), expires, offered)
        } else {
            S::caller()
        };
        let mut run = Run {
            s,
            rng,
            now: Duration::ZERO,
            wire: None,
            next_id: 0,
            log: vec![format!("seed {seed}, callee {callee}")],
        };
        let steps = 10 + run.rng.next_u64() % 120;
        for _ in 0..steps {
            run.step();
        }
        // both sides stop: the session ends, our last re-offer on the wire gets its answer
        run.s.terminate();
        run.settle();
        if let Some((_, Kind::ReInvite)) = run.wire {
            // its 2xx wants an ACK: not done until it came
            assert!(!run.s.done(), "{:?}", run.log);
        }
        if let Some((id, _)) = run.wire.take() {
            let now = run.now;
            let mut rng = Rng::new(seed);
            run.s
                .reoffers_mut()
                .handle_response(id, 200, None, now, &mut rng);
            run.settle();
        }
        assert_eq!(run.s.state(), SessionState::Terminated);
        assert!(run.s.done(), "not done: {:?}", run.log);
        assert!(!run.s.reoffers().busy(), "{:?}", run.log);
        assert_eq!(
            run.s.poll_timeout(),
            None,
            "a timer after the end: {:?}",
            run.log
        );
    }
}
