//! Property test of the offer/answer machine (`sipua_proto::session::negotiation`): two
//! sessions, each driven only by what its machine allows, exchange random sequences of
//! INVITEs with and without offers, reliable and unreliable 1xx, PRACKs, 2xx, ACKs,
//! re-INVITEs, UPDATEs, refusals (488), glare (491), pending offers (500), lost requests
//! (their timeout) and CANCEL, with messages crossing in the network. For thousands of seeds:
//! - no step panics, and a body one conforming side sends is never `Unexpected` to the other;
//! - an answer arrives at exactly the exchange count its sender reached (both sides agree on
//!   every completed exchange);
//! - once both sides stop acting and the network drains, both are stable, or the session
//!   ended.

use std::collections::VecDeque;

use sipua_proto::rng::Rng;
use sipua_proto::session::{Message, Negotiation, OfferAnswer, OfferAnswerError, Received};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invite { initial: bool },
    Provisional { reliable: bool },
    InviteOk,
    InviteRefused(u16),
    Ack,
    Prack,
    PrackOk,
    Update,
    UpdateOk,
    UpdateRefused(u16),
    Cancel,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    kind: Kind,
    body: bool,
    /// The sender's completed exchanges when it sent an answer.
    count: u32,
}

#[derive(Debug, Default)]
struct Peer {
    oa: Negotiation,
    caller: bool,
    ended: bool,
    /// The dialog is confirmed (2xx of the initial INVITE sent or received).
    confirmed: bool,
    /// An INVITE of ours awaits its final response.
    invite_out: bool,
    /// An INVITE of the peer's awaits our final response (and whether it is the initial one).
    invite_in: Option<bool>,
    /// A 2xx of ours awaits its ACK.
    ack_due: bool,
    /// An UPDATE of ours awaits its final response.
    update_out: bool,
    /// A reliable 1xx of ours awaits its PRACK.
    prack_due: bool,
    /// Early media was answered (the INVITE's exchange finished in a 1xx).
    log: Vec<String>,
}

struct World {
    rng: Rng,
    peers: [Peer; 2],
    /// In flight, per direction (0: to the callee, 1: to the caller), in order.
    wire: [VecDeque<Msg>; 2],
}

fn msg(kind: Kind, body: bool, count: u32) -> Msg {
    Msg { kind, body, count }
}

impl World {
    fn new(seed: u64) -> World {
        let mut w = World {
            rng: Rng::new(seed),
            peers: [Peer::default(), Peer::default()],
            wire: [VecDeque::new(), VecDeque::new()],
        };
        w.peers[0].caller = true;
        w
    }

    fn pick(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    /// Peer `p` sends `m` to the other.
    fn send(&mut self, p: usize, m: Msg) {
        self.peers[p]
            .log
            .push(format!("send {m:?} -> {:?}", self.peers[p].oa.state()));
        self.wire[p].push_back(m);
    }

    fn end(&mut self) {
        self.peers[0].ended = true;
        self.peers[1].ended = true;
    }

    /// What a response of `p` in message `m` carries: our answer if an offer awaits one
    /// that `m` may carry, our owed offer if `m` may carry it, the same description again
    /// (a 2xx or 1xx after an exchange), or nothing.
    fn response_body(&mut self, p: usize, m: Message) -> (bool, u32) {
        let oa = &mut self.peers[p].oa;
        match oa.state() {
            OfferAnswer::RemoteOffer(o) if o.answered_by(m) => {
                oa.send_answer(m).unwrap();
                (true, oa.exchanges())
            }
            OfferAnswer::OweOffer => (oa.send_offer(m).is_ok(), 0),
            _ => (oa.exchanges() > 0 && m == Message::Success, 0),
        }
    }

    /// Takes a body that arrived at `p` in `m`: what the machine says it is, checked.
    fn take(&mut self, p: usize, m: Message, sent: &Msg) -> Result<Received, OfferAnswerError> {
        let r = self.peers[p].oa.receive(m);
        self.peers[p]
            .log
            .push(format!("recv {sent:?} as {m:?}: {r:?}"));
        assert_ne!(
            r,
            Err(OfferAnswerError::Unexpected),
            "a conforming peer's body refused\n{}",
            self.dump()
        );
        if r == Ok(Received::Answer) {
            assert_eq!(
                self.peers[p].oa.exchanges(),
                sent.count,
                "the sides disagree on the exchanges\n{}",
                self.dump()
            );
        }
        r
    }

    fn dump(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.peers.iter().enumerate() {
            s += &format!("peer {i}:\n  {}\n", p.log.join("\n  "));
        }
        s
    }

    /// Peer `p` sends an INVITE (the initial one or a re-INVITE), with an offer or without.
    fn send_invite(&mut self, p: usize, initial: bool) {
        let offer = self.pick(2) == 0;
        let oa = &mut self.peers[p].oa;
        if offer {
            oa.send_offer(Message::Invite).unwrap();
        } else {
            oa.send_invite_without_offer().unwrap();
        }
        self.peers[p].invite_out = true;
        self.send(p, msg(Kind::Invite { initial }, offer, 0));
    }

    /// One random action of peer `p`, if it has one it may take; true when it acted.
    fn act(&mut self, p: usize) -> bool {
        if self.peers[p].ended {
            return false;
        }
        let choice = self.pick(8);
        let me = &self.peers[p];
        match choice {
            // the caller's initial INVITE
            0 if me.caller
                && !me.invite_out
                && !me.confirmed
                && me.oa.exchanges() == 0
                && me.oa.state() == OfferAnswer::Stable
                && me.log.is_empty() =>
            {
                self.send_invite(p, true);
                true
            }
            // a provisional response to the INVITE in progress
            1 if me.invite_in == Some(true) && !me.prack_due => {
                let reliable = self.pick(2) == 0;
                let with_body = self.pick(2) == 0;
                let m = Message::Provisional { reliable };
                let oa = &mut self.peers[p].oa;
                let (body, count) = match oa.state() {
                    OfferAnswer::RemoteOffer(Message::Invite) if with_body => {
                        oa.send_answer(m).unwrap();
                        (true, oa.exchanges())
                    }
                    OfferAnswer::OweOffer if with_body && reliable => {
                        oa.send_offer(m).unwrap();
                        (true, 0)
                    }
                    _ => (false, 0),
                };
                self.peers[p].prack_due = reliable;
                self.send(p, msg(Kind::Provisional { reliable }, body, count));
                true
            }
            // the final response to the INVITE in progress: 2xx mostly
            2 if me.invite_in.is_some() && !me.prack_due => {
                let initial = me.invite_in == Some(true);
                let refuse = self.pick(5) == 0;
                if refuse && initial {
                    // a refused initial INVITE ends the session
                    self.peers[p].invite_in = None;
                    self.peers[p].oa.rollback();
                    self.send(p, msg(Kind::InviteRefused(486), false, 0));
                    self.peers[p].ended = true;
                    return true;
                }
                let (body, count) = self.response_body(p, Message::Success);
                let me = &mut self.peers[p];
                me.invite_in = None;
                me.confirmed = true;
                me.ack_due = true;
                self.send(p, msg(Kind::InviteOk, body, count));
                true
            }
            // a re-INVITE, with or without an offer
            3 if me.confirmed
                && !me.invite_out
                && me.invite_in.is_none()
                && !me.ack_due
                && me.oa.can_offer() =>
            {
                self.send_invite(p, false);
                true
            }
            // an UPDATE with an offer, in the confirmed dialog or an early one after the
            // INVITE's exchange
            4 if !me.update_out && me.oa.can_offer() && (me.confirmed || me.oa.exchanges() > 0) => {
                self.peers[p].oa.send_offer(Message::Update).unwrap();
                self.peers[p].update_out = true;
                self.send(p, msg(Kind::Update, true, 0));
                true
            }
            // the caller cancels its initial INVITE before it is answered
            5 if me.caller && me.invite_out && !me.confirmed && self.pick(4) == 0 => {
                self.send(p, msg(Kind::Cancel, false, 0));
                true
            }
            // the last request in flight from us is lost: its transaction times out
            6 => {
                let lost = self.wire[p].back().is_some_and(|m| {
                    matches!(m.kind, Kind::Update | Kind::Invite { initial: false })
                });
                if !lost {
                    return false;
                }
                let m = self.wire[p].pop_back().unwrap();
                let me = &mut self.peers[p];
                me.log.push(format!("lost {m:?}"));
                match m.kind {
                    Kind::Update => me.update_out = false,
                    _ => me.invite_out = false,
                }
                me.oa.rollback();
                true
            }
            _ => false,
        }
    }

    /// Delivers the next message towards peer `to`.
    fn deliver(&mut self, to: usize) {
        let from = 1 - to;
        let Some(m) = self.wire[from].pop_front() else {
            return;
        };
        if self.peers[to].ended {
            return;
        }
        match m.kind {
            Kind::Invite { initial } => {
                let r = if m.body {
                    self.take(to, Message::Invite, &m).map(|_| ())
                } else {
                    let r = self.peers[to].oa.receive_invite_without_offer();
                    self.peers[to].log.push(format!("recv {m:?}: {r:?}"));
                    r
                };
                let busy =
                    !initial && (self.peers[to].invite_in.is_some() || self.peers[to].invite_out);
                match r {
                    Err(e) => {
                        // the machine's glare and pending verdicts, as SIP answers them
                        let status = if e == OfferAnswerError::Glare {
                            491
                        } else {
                            500
                        };
                        self.send(to, msg(Kind::InviteRefused(status), false, 0));
                    }
                    Ok(()) if busy => {
                        // the core refuses a second INVITE transaction (§14.2)
                        self.peers[to].oa.rollback();
                        self.send(to, msg(Kind::InviteRefused(491), false, 0));
                    }
                    Ok(()) if m.body && self.pick(4) == 0 => {
                        // the media handler refuses the offer
                        self.peers[to].oa.rollback();
                        self.send(to, msg(Kind::InviteRefused(488), false, 0));
                        if initial {
                            self.peers[to].ended = true;
                        }
                    }
                    Ok(()) => {
                        if initial {
                            self.peers[to].invite_in = Some(true);
                        } else {
                            // a re-INVITE is answered at once
                            let (body, count) = self.response_body(to, Message::Success);
                            self.peers[to].ack_due = true;
                            self.send(to, msg(Kind::InviteOk, body, count));
                        }
                    }
                }
            }
            Kind::Provisional { reliable } => {
                let mut answer = None;
                if m.body && self.peers[to].invite_out {
                    let r = self.take(to, Message::Provisional { reliable }, &m);
                    if r == Ok(Received::Offer) {
                        // an offer in a reliable 1xx: our answer goes in the PRACK
                        self.peers[to].oa.send_answer(Message::Prack).unwrap();
                        answer = Some(self.peers[to].oa.exchanges());
                    }
                }
                if reliable {
                    let (body, count) = match answer {
                        Some(c) => (true, c),
                        None => (false, 0),
                    };
                    self.send(to, msg(Kind::Prack, body, count));
                }
            }
            Kind::Prack => {
                if m.body {
                    let r = self.take(to, Message::Prack, &m);
                    assert_eq!(r, Ok(Received::Answer), "{}", self.dump());
                }
                self.peers[to].prack_due = false;
                self.send(to, msg(Kind::PrackOk, false, 0));
            }
            Kind::PrackOk => {}
            Kind::InviteOk => {
                let me = &mut self.peers[to];
                if !me.invite_out {
                    return; // a 2xx for an INVITE we gave up on: nothing to negotiate
                }
                me.invite_out = false;
                me.confirmed = true;
                let mut ack = (false, 0);
                if m.body {
                    match self.take(to, Message::Success, &m) {
                        Ok(Received::Offer) => {
                            self.peers[to].oa.send_answer(Message::Ack).unwrap();
                            ack = (true, self.peers[to].oa.exchanges());
                        }
                        Ok(_) => {}
                        Err(e) => panic!("a 2xx body refused: {e}\n{}", self.dump()),
                    }
                } else if matches!(
                    self.peers[to].oa.state(),
                    OfferAnswer::LocalOffer(Message::Invite) | OfferAnswer::AwaitingOffer
                ) {
                    // a 2xx that owed a body and has none: negotiation failed; ACK, then BYE
                    self.peers[to].oa.rollback();
                    self.send(to, msg(Kind::Ack, false, 0));
                    self.end();
                    return;
                }
                self.send(to, msg(Kind::Ack, ack.0, ack.1));
            }
            Kind::InviteRefused(_) => {
                let me = &mut self.peers[to];
                if !me.invite_out {
                    return;
                }
                me.invite_out = false;
                me.oa.rollback();
                if !me.confirmed {
                    // the initial INVITE failed: no session
                    me.ended = true;
                }
            }
            Kind::Ack => {
                if m.body {
                    let r = self.take(to, Message::Ack, &m);
                    assert_eq!(r, Ok(Received::Answer), "{}", self.dump());
                } else if self.peers[to].oa.state() == OfferAnswer::LocalOffer(Message::Success) {
                    // our 2xx offered and the ACK did not answer: the session fails
                    self.end();
                }
                self.peers[to].ack_due = false;
            }
            Kind::Update => {
                let r = self.take(to, Message::Update, &m);
                let reply = match r {
                    Ok(_) if self.pick(4) == 0 => {
                        self.peers[to].oa.rollback();
                        msg(Kind::UpdateRefused(488), false, 0)
                    }
                    Ok(_) => {
                        self.peers[to]
                            .oa
                            .send_answer(Message::UpdateSuccess)
                            .unwrap();
                        msg(Kind::UpdateOk, true, self.peers[to].oa.exchanges())
                    }
                    Err(OfferAnswerError::Glare) => msg(Kind::UpdateRefused(491), false, 0),
                    Err(_) => msg(Kind::UpdateRefused(500), false, 0),
                };
                self.send(to, reply);
            }
            Kind::UpdateOk => {
                if !self.peers[to].update_out {
                    return;
                }
                self.peers[to].update_out = false;
                let r = self.take(to, Message::UpdateSuccess, &m);
                assert_eq!(r, Ok(Received::Answer), "{}", self.dump());
            }
            Kind::UpdateRefused(_) => {
                if !self.peers[to].update_out {
                    return;
                }
                self.peers[to].update_out = false;
                self.peers[to].oa.rollback();
            }
            Kind::Cancel => {
                if self.peers[to].invite_in == Some(true) {
                    // 487 to the INVITE: the session never was
                    self.peers[to].invite_in = None;
                    self.peers[to].oa.rollback();
                    self.send(to, msg(Kind::InviteRefused(487), false, 0));
                    self.peers[to].ended = true;
                }
            }
        }
    }

    fn step(&mut self, acting: bool) {
        let r = self.pick(10);
        if acting && r < 4 {
            let p = (r % 2) as usize;
            self.act(p);
        } else {
            // deliver towards a random side that has something coming
            let to = self.pick(2) as usize;
            if self.wire[1 - to].is_empty() {
                self.deliver(1 - to);
            } else {
                self.deliver(to);
            }
        }
    }
}

/// Drives the sides without new actions until nothing is in flight; the callee answers
/// an INVITE still waiting (it would time out in SIP; here it answers so the run ends).
fn settle(w: &mut World) {
    for _ in 0..200 {
        if w.wire.iter().all(VecDeque::is_empty) {
            let waiting = (0..2).find(|&p| w.peers[p].invite_in.is_some() && !w.peers[p].ended);
            let Some(p) = waiting else { return };
            w.peers[p].prack_due = false;
            let (body, count) = w.response_body(p, Message::Success);
            w.peers[p].invite_in = None;
            w.peers[p].confirmed = true;
            w.send(p, msg(Kind::InviteOk, body, count));
        }
        w.step(false);
    }
    panic!("the network did not drain\n{}", w.dump());
}

#[test]
fn random_interleavings_agree_and_end_stable() {
    let mut exchanged = 0u64;
    let mut glares = 0u64;
    for seed in 0..4000u64 {
        let mut w = World::new(seed);
        // the caller always starts
        while !w.act(0) {}
        for _ in 0..(40 + seed % 80) {
            w.step(true);
        }
        settle(&mut w);
        let [a, b] = &w.peers;
        glares += a
            .log
            .iter()
            .chain(&b.log)
            .filter(|l| l.contains("Glare"))
            .count() as u64;
        if a.ended || b.ended {
            continue;
        }
        assert_eq!(
            a.oa.state(),
            OfferAnswer::Stable,
            "seed {seed}\n{}",
            w.dump()
        );
        assert_eq!(
            b.oa.state(),
            OfferAnswer::Stable,
            "seed {seed}\n{}",
            w.dump()
        );
        assert_eq!(
            a.oa.exchanges(),
            b.oa.exchanges(),
            "seed {seed}\n{}",
            w.dump()
        );
        exchanged += u64::from(a.oa.exchanges());
    }
    // the runs did exercise the machine: many exchanges, and glare among them
    assert!(exchanged > 4000, "{exchanged} exchanges");
    assert!(glares > 50, "{glares} glares");
}

/// A peer that follows no rules: any call, any message, in any order. The machine never
/// panics, a refused call changes nothing, the exchange count never goes back, and an
/// answer is only ever taken for an offer it answers.
#[test]
fn a_rogue_sequence_never_corrupts_the_state() {
    let messages = Message::ALL;
    let mut rng = Rng::new(99);
    for _ in 0..2000 {
        let mut oa = Negotiation::new();
        for _ in 0..60 {
            let before = oa;
            let m = messages[(rng.next_u64() % messages.len() as u64) as usize];
            let r = match rng.next_u64() % 6 {
                0 => oa.send_offer(m).map(|_| None),
                1 => oa.send_answer(m).map(|_| None),
                2 => oa.send_invite_without_offer().map(|_| None),
                3 => oa.receive_invite_without_offer().map(|_| None),
                4 => {
                    oa.rollback();
                    assert_eq!(oa.state(), OfferAnswer::Stable);
                    Ok(None)
                }
                _ => oa.receive(m).map(Some),
            };
            match r {
                Err(_) | Ok(Some(Received::Repeat)) => assert_eq!(oa, before),
                Ok(Some(Received::Answer)) => {
                    let OfferAnswer::LocalOffer(offer) = before.state() else {
                        panic!("an answer with no offer of ours: {before:?} {m:?}");
                    };
                    assert!(offer.answered_by(m));
                    assert_eq!(oa.exchanges(), before.exchanges() + 1);
                }
                Ok(_) => assert!(oa.exchanges() >= before.exchanges()),
            }
        }
    }
}
