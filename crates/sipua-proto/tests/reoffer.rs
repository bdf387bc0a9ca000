//! Property test of our re-offers' machine (`sipua_proto::session::reoffer`): for thousands
//! of seeds, one session's application and session timer ask for re-INVITEs and UPDATEs at
//! random (with and without an offer, with our 2xx's offer awaiting its ACK or not), sends
//! succeed or fail, the peer answers with any status (491 and 500 with a Retry-After
//! included), transactions fail, ACKs come, time passes by random steps, and the session
//! ends at a random point; the machine's events are handled as the async session task
//! handles them. Checked:
//! - nothing panics, and the machine is busy exactly while someone waits for a re-offer: at
//!   most one at a time, whatever its kind;
//! - whoever asked always hears, exactly once: accepted, refused, failed, or told the session
//!   ended; none is left waiting once the session is over and its last response came;
//! - a refused re-INVITE is sent at most `backoff::ATTEMPTS` times, only after its back-off,
//!   and never after the session ended; an UPDATE is never sent again;
//! - a response to a transaction that is not ours (or a provisional one) changes nothing.

use std::time::Duration;

use sipua_proto::rng::Rng;
use sipua_proto::session::backoff;
use sipua_proto::session::reoffer::{Ask, Event, Kind, Outcome, Reoffers};

/// Virtual time: a `Duration` since the start.
type T = Duration;

/// Someone waiting for a re-offer, as the task keeps them.
#[derive(Debug)]
struct Waiter {
    kind: Kind,
    /// Times it went on the wire.
    sends: u8,
    /// When its retry is due, while it backs off.
    retry_at: Option<T>,
}

struct Run {
    r: Reoffers<T, u32>,
    now: T,
    waiter: Option<Waiter>,
    /// Our transaction on the wire, if any.
    wire: Option<u32>,
    next_id: u32,
    ended: bool,
    heard: u32,
    asked: u32,
    retries: u32,
    /// Re-INVITEs refused with 491 or 500 on their last attempt.
    given_up: u32,
    log: Vec<String>,
}

impl Run {
    fn new(rng: &mut Rng) -> Run {
        Run {
            r: Reoffers::new(rng.next_u64().is_multiple_of(2)),
            now: T::ZERO,
            waiter: None,
            wire: None,
            next_id: 1,
            ended: false,
            heard: 0,
            asked: 0,
            retries: 0,
            given_up: 0,
            log: Vec::new(),
        }
    }

    fn check(&self) {
        assert_eq!(
            self.r.busy(),
            self.waiter.is_some(),
            "busy exactly while someone waits: {:#?}",
            self.log
        );
        assert_eq!(self.r.in_flight().is_some(), self.wire.is_some());
        if self.ended {
            assert_eq!(self.r.poll_timeout(), None, "no retry after the end");
        }
    }

    fn hear(&mut self, what: &str) {
        let w = self.waiter.take().expect("nobody waits to hear");
        self.log.push(format!("heard {what} ({:?})", w.kind));
        self.heard += 1;
    }

    /// Sends what the machine allowed (or fails to, as the task may).
    fn send(&mut self, rng: &mut Rng) {
        let w = self.waiter.as_mut().expect("a send with nobody waiting");
        assert!(
            !self.ended,
            "a re-offer sent after the end: {:#?}",
            self.log
        );
        if rng.next_u64().is_multiple_of(8) {
            self.r.not_sent();
            self.hear("not sent");
            return;
        }
        w.sends += 1;
        assert!(
            w.kind == Kind::ReInvite && w.sends <= backoff::ATTEMPTS || w.sends == 1,
            "sent too often: {:#?}",
            self.log
        );
        let id = self.next_id;
        self.next_id += 1;
        self.r.sent(w.kind, id);
        self.wire = Some(id);
        self.log.push(format!("sent {:?} in {id}", w.kind));
    }

    fn ask(&mut self, rng: &mut Rng) {
        let kind = if rng.next_u64().is_multiple_of(2) {
            Kind::ReInvite
        } else {
            Kind::Update
        };
        let (offers, awaiting_ack) = (
            !rng.next_u64().is_multiple_of(3),
            rng.next_u64().is_multiple_of(4),
        );
        let busy = self.r.busy();
        let ask = self.r.ask(kind, offers, awaiting_ack);
        self.log.push(format!("ask {kind:?} -> {ask:?}"));
        match ask {
            Ask::Busy => assert!(busy || self.ended, "refused while idle: {:#?}", self.log),
            Ask::AfterAck | Ask::Send => {
                assert!(!busy && !self.ended, "a second re-offer: {:#?}", self.log);
                self.asked += 1;
                self.waiter = Some(Waiter {
                    kind,
                    sends: 0,
                    retry_at: None,
                });
                if ask == Ask::Send {
                    self.send(rng);
                }
            }
        }
    }

    fn respond(&mut self, rng: &mut Rng) {
        // glare often, so that a re-INVITE meets it on every attempt in some runs
        const STATUSES: [u16; 10] = [100, 180, 200, 491, 491, 491, 500, 488, 481, 408];
        let status = STATUSES[(rng.next_u64() % 10) as usize];
        let retry_after = (rng.next_u64().is_multiple_of(3)).then(|| rng.next_u64() % 14);
        let ours = self.wire.filter(|_| !rng.next_u64().is_multiple_of(5));
        let id = ours.unwrap_or(self.next_id + 100);
        let before = (self.r.busy(), self.r.in_flight(), self.r.poll_timeout());
        let outcome = self
            .r
            .handle_response(id, status, retry_after, self.now, rng);
        self.log.push(format!("{status} to {id} -> {outcome:?}"));
        if ours.is_none() || status < 200 {
            assert_eq!(outcome, None, "{:#?}", self.log);
            let after = (self.r.busy(), self.r.in_flight(), self.r.poll_timeout());
            assert_eq!(before, after, "a response not ours changed the machine");
            return;
        }
        self.wire = None;
        match outcome.expect("a final response to ours") {
            Outcome::Accepted => self.hear("accepted"),
            Outcome::Refused => {
                let w = self.waiter.as_ref().unwrap();
                if matches!(status, 491 | 500) && w.sends == backoff::ATTEMPTS {
                    self.given_up += 1;
                }
                self.hear("refused")
            }
            Outcome::Retrying => {
                let w = self.waiter.as_mut().unwrap();
                assert_eq!(w.kind, Kind::ReInvite, "only a re-INVITE goes again");
                assert!(matches!(status, 491 | 500) && !self.ended);
                let at = self.r.poll_timeout().expect("a retry has a time");
                assert!(at >= self.now, "a retry in the past");
                w.retry_at = Some(at);
            }
        }
    }

    /// Handles the machine's events as the task does.
    fn pump(&mut self, rng: &mut Rng) {
        while let Some(e) = self.r.poll_event() {
            self.log.push(format!("event {e:?}"));
            match e {
                Event::Retry => {
                    let w = self.waiter.as_mut().expect("a retry nobody waits for");
                    assert!(
                        w.retry_at.is_some_and(|at| at <= self.now),
                        "retry before due"
                    );
                    w.retry_at = None;
                    self.retries += 1;
                    self.send(rng);
                }
                Event::Release(kind) => {
                    assert_eq!(self.waiter.as_ref().map(|w| w.kind), Some(kind));
                    // asked for again, the ACK in: it goes
                    let offers = rng.next_u64().is_multiple_of(2);
                    assert_eq!(self.r.ask(kind, offers, false), Ask::Send);
                    self.send(rng);
                }
            }
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        match rng.next_u64() % 9 {
            0 | 1 => self.ask(rng),
            2 | 3 => self.respond(rng),
            4 => {
                if let Some(id) = self.wire.filter(|_| !rng.next_u64().is_multiple_of(3)) {
                    assert!(self.r.handle_failure(id).is_some());
                    self.wire = None;
                    self.hear("failed");
                } else {
                    assert_eq!(self.r.handle_failure(self.next_id + 7), None);
                }
            }
            5 => {
                self.r.handle_ack();
                self.log.push("ACK".into());
            }
            6 if rng.next_u64().is_multiple_of(6) => self.end(),
            _ => {
                self.now += Duration::from_millis(rng.next_u64() % 3_000);
                self.r.handle_timeout(self.now);
            }
        }
        self.pump(rng);
        self.check();
    }

    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let dropped = self.r.end();
        self.log.push(format!("end -> {dropped:?}"));
        if let Some(kind) = dropped {
            assert_eq!(self.waiter.as_ref().map(|w| w.kind), Some(kind));
            self.hear("ended");
        }
    }
}

#[test]
fn whoever_asks_for_a_reoffer_hears_once_and_one_goes_at_a_time() {
    let (mut asked, mut heard, mut retries, mut given_up) = (0, 0, 0, 0);
    for seed in 0..4_000u64 {
        let mut rng = Rng::new(seed ^ 0x5e0f);
        let mut run = Run::new(&mut rng);
        for _ in 0..1 + rng.next_u64() % 60 {
            run.step(&mut rng);
        }
        // both sides stop: the session ends, the last response comes, time runs on
        run.end();
        if let Some(id) = run.wire.take() {
            let o = run.r.handle_response(id, 200, None, run.now, &mut rng);
            assert_eq!(o, Some(Outcome::Accepted));
            run.hear("accepted");
        }
        run.now += Duration::from_secs(60);
        run.r.handle_timeout(run.now);
        run.pump(&mut rng);
        run.check();
        assert!(run.waiter.is_none(), "left waiting: {:#?}", run.log);
        assert_eq!(run.asked, run.heard, "{:#?}", run.log);
        asked += run.asked;
        heard += run.heard;
        retries += run.retries;
        given_up += run.given_up;
    }
    // the runs reached the rules under test
    assert!(asked > 2_000, "{asked} re-offers asked for");
    assert_eq!(asked, heard);
    assert!(retries > 200, "{retries} retries after a back-off");
    assert!(
        given_up > 10,
        "{given_up} re-INVITEs refused on their last attempt"
    );
}
