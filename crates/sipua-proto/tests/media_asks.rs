//! Property test of what the session machine asks of the media handler
//! (`sipua_proto::session::media`). Two sessions, each a `Media` driving a model handler
//! with WebRTC's rules (an offer is applied only when stable, an answer only to an offer of
//! ours, a description made is an offer when stable and an answer when an offer was
//! applied), exchange random sequences of INVITEs with and without offers, reliable and
//! unreliable 1xx with and without bodies, PRACKs, 2xx, ACKs, re-INVITEs, UPDATEs, refusals,
//! glare, lost requests and CANCEL, with messages crossing, and the handlers fail one ask in
//! ten. For thousands of seeds:
//! - the machine never asks a handler for something its state forbids, and never panics;
//! - once a step is done, the handler and the negotiation agree (an offer of ours pending
//!   exactly when the handler holds one, the peer's when it holds the peer's);
//! - once both sides stop acting and the network drains, both are stable with the same
//!   number of completed exchanges, or the session ended.

use std::collections::VecDeque;

use sipua_proto::rng::Rng;
use sipua_proto::session::media::Ask;
use sipua_proto::session::{Media, Message, OfferAnswer, OfferAnswerError, Received};

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
}

/// What a model handler holds, as WebRTC's signalling states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Held {
    #[default]
    Stable,
    /// An offer of ours awaits its answer.
    Local,
    /// The peer's offer awaits our answer.
    Remote,
}

#[derive(Debug, Default)]
struct Peer {
    media: Option<Media>,
    held: Held,
    /// A description was made (so one can be repeated).
    described: bool,
    caller: bool,
    ended: bool,
    confirmed: bool,
    invite_out: bool,
    invite_in: Option<bool>,
    ack_due: bool,
    update_out: bool,
    prack_due: bool,
    log: Vec<String>,
}

struct World {
    rng: Rng,
    peers: [Peer; 2],
    wire: [VecDeque<Msg>; 2],
    asks: u64,
    failures: u64,
    /// An answer failed after its sender counted the exchange.
    diverged: bool,
}

fn msg(kind: Kind, body: bool) -> Msg {
    Msg { kind, body }
}

impl World {
    fn new(seed: u64) -> World {
        let mut w = World {
            rng: Rng::new(seed),
            peers: [Peer::default(), Peer::default()],
            wire: [VecDeque::new(), VecDeque::new()],
            asks: 0,
            failures: 0,
            diverged: false,
        };
        w.peers[0].caller = true;
        w.peers[0].media = Some(Media::new());
        w
    }

    fn pick(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn media(&mut self, p: usize) -> &mut Media {
        self.peers[p].media.as_mut().expect("a session")
    }

    fn dump(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.peers.iter().enumerate() {
            s += &format!("peer {i}:\n  {}\n", p.log.join("\n  "));
        }
        s
    }

    fn send(&mut self, p: usize, m: Msg) {
        let state = self.peers[p].media.as_ref().map(Media::state);
        self.peers[p].log.push(format!("send {m:?} -> {state:?}"));
        self.wire[p].push_back(m);
    }

    fn end(&mut self) {
        self.peers[0].ended = true;
        self.peers[1].ended = true;
    }

    /// Does what `p`'s machine asks of its handler, failing one ask in ten; whether all
    /// went, and whether a description was made or repeated.
    fn pump(&mut self, p: usize) -> (bool, bool) {
        let mut made = false;
        while let Some(ask) = self.media(p).poll_ask() {
            self.asks += 1;
            let fail = matches!(
                ask,
                Ask::ApplyOffer(_) | Ask::ApplyAnswer(_) | Ask::Describe(_)
            ) && self.pick(10) == 0;
            let me = &mut self.peers[p];
            me.log.push(format!(
                "ask {ask:?} of {:?}{}",
                me.held,
                if fail { ": fails" } else { "" }
            ));
            let allowed = match ask {
                Ask::ApplyOffer(_) => me.held == Held::Stable,
                Ask::ApplyAnswer(_) => me.held == Held::Local,
                Ask::Describe(_) => me.held != Held::Local,
                Ask::Repeat(_) => me.described,
                Ask::Rollback | Ask::Confirmed => true,
            };
            if !allowed {
                let held = me.held;
                panic!("{ask:?} asked of a handler in {held:?}\n{}", self.dump());
            }
            let me = &mut self.peers[p];
            if fail {
                self.failures += 1;
                self.media(p).failed();
                // only the roll-back may follow
                while let Some(ask) = self.media(p).poll_ask() {
                    assert_eq!(ask, Ask::Rollback, "{}", self.dump());
                    self.peers[p].held = Held::Stable;
                    self.peers[p].log.push("ask Rollback".into());
                }
                return (false, false);
            }
            match ask {
                Ask::ApplyOffer(_) => me.held = Held::Remote,
                Ask::ApplyAnswer(_) => me.held = Held::Stable,
                Ask::Describe(_) => {
                    me.held = if me.held == Held::Remote {
                        Held::Stable
                    } else {
                        Held::Local
                    };
                    me.described = true;
                    made = true;
                }
                Ask::Repeat(_) => made = true,
                Ask::Rollback => me.held = Held::Stable,
                Ask::Confirmed => {}
            }
        }
        (true, made)
    }

    /// After a step: the handler holds what the negotiation says is pending.
    fn check(&self, p: usize) {
        let me = &self.peers[p];
        let (Some(media), false) = (&me.media, me.ended) else {
            return;
        };
        assert!(!media.busy(), "asks left undone\n{}", self.dump());
        let ok = match media.state() {
            OfferAnswer::Stable | OfferAnswer::AwaitingOffer => me.held == Held::Stable,
            OfferAnswer::LocalOffer(_) => me.held == Held::Local,
            // the callee's INVITE's offer is applied with the first response that answers it
            OfferAnswer::RemoteOffer(Message::Invite) if !me.caller && !me.confirmed => {
                me.held != Held::Local
            }
            OfferAnswer::RemoteOffer(_) => me.held == Held::Remote,
            // an unreliable 1xx may show our owed offer before a reliable one or the 2xx
            // makes it count
            OfferAnswer::OweOffer => me.held != Held::Remote,
        };
        assert!(
            ok,
            "peer {p}: the handler holds {:?} in {:?}\n{}",
            me.held,
            media.state(),
            self.dump()
        );
    }

    /// Peer `p` responds with `m`: what its machine puts in it, made by the handler.
    /// `None` when the handler failed (the response is not sent).
    fn respond(&mut self, p: usize, m: Message) -> Option<bool> {
        if !self.media(p).respond(m) {
            self.media(p).sent(m, false);
            return Some(false);
        }
        match self.pump(p) {
            (true, made) => {
                self.media(p).sent(m, made);
                Some(made)
            }
            _ => None,
        }
    }

    fn send_invite(&mut self, p: usize, initial: bool) -> bool {
        let offer = self.pick(2) == 0;
        if offer {
            self.media(p).offer(Message::Invite).unwrap();
            if !self.pump(p).0 {
                return false;
            }
        }
        self.media(p).sent(Message::Invite, offer);
        self.peers[p].invite_out = true;
        self.send(p, msg(Kind::Invite { initial }, offer));
        true
    }

    fn act(&mut self, p: usize) -> bool {
        if self.peers[p].ended || self.peers[p].media.is_none() {
            return false;
        }
        let choice = self.pick(8);
        let me = &self.peers[p];
        let oa = me.media.as_ref().unwrap().negotiation();
        match choice {
            0 if me.caller && !me.invite_out && !me.confirmed && me.log.is_empty() => {
                if !self.send_invite(p, true) {
                    // no offer could be made: the call never starts
                    self.peers[p].ended = true;
                }
                true
            }
            // a provisional response, a 183 with a description or a 180 without
            1 if me.invite_in == Some(true) && !me.prack_due => {
                let reliable = self.pick(2) == 0;
                let m = Message::Provisional { reliable };
                let body = if self.pick(2) == 0 {
                    match self.respond(p, m) {
                        Some(b) => b,
                        None => return false,
                    }
                } else {
                    false
                };
                self.peers[p].prack_due = reliable;
                self.send(p, msg(Kind::Provisional { reliable }, body));
                true
            }
            2 if me.invite_in.is_some() && !me.prack_due => {
                let initial = me.invite_in == Some(true);
                if initial && self.pick(5) == 0 {
                    self.peers[p].invite_in = None;
                    self.send(p, msg(Kind::InviteRefused(486), false));
                    self.peers[p].ended = true;
                    return true;
                }
                self.answer_invite(p);
                true
            }
            3 if me.confirmed
                && !me.invite_out
                && me.invite_in.is_none()
                && !me.ack_due
                && oa.can_offer() =>
            {
                self.send_invite(p, false)
            }
            4 if !me.update_out && oa.can_offer() && (me.confirmed || oa.exchanges() > 0) => {
                self.media(p).offer(Message::Update).unwrap();
                if !self.pump(p).0 {
                    return false;
                }
                self.media(p).sent(Message::Update, true);
                self.peers[p].update_out = true;
                self.send(p, msg(Kind::Update, true));
                true
            }
            5 if me.caller && me.invite_out && !me.confirmed && self.pick(4) == 0 => {
                self.send(p, msg(Kind::Cancel, false));
                true
            }
            6 => {
                let lost = self.wire[p].back().is_some_and(|m| {
                    matches!(m.kind, Kind::Update | Kind::Invite { initial: false })
                });
                if !lost {
                    return false;
                }
                let m = self.wire[p].pop_back().unwrap();
                self.peers[p].log.push(format!("lost {m:?}"));
                let carrier = match m.kind {
                    Kind::Update => {
                        self.peers[p].update_out = false;
                        Message::Update
                    }
                    _ => {
                        self.peers[p].invite_out = false;
                        Message::Invite
                    }
                };
                self.media(p).refused(carrier);
                self.pump(p);
                true
            }
            _ => false,
        }
    }

    /// The 2xx of the INVITE `p` is answering; a handler that fails ends the call (488).
    fn answer_invite(&mut self, p: usize) {
        let initial = self.peers[p].invite_in == Some(true);
        self.peers[p].invite_in = None;
        match self.respond(p, Message::Success) {
            Some(body) => {
                self.peers[p].confirmed = true;
                self.peers[p].ack_due = true;
                self.send(p, msg(Kind::InviteOk, body));
            }
            None => {
                self.send(p, msg(Kind::InviteRefused(488), false));
                if initial {
                    self.peers[p].ended = true;
                }
            }
        }
    }

    fn deliver(&mut self, to: usize) {
        let from = 1 - to;
        let Some(m) = self.wire[from].pop_front() else {
            return;
        };
        if self.peers[to].ended {
            return;
        }
        self.peers[to].log.push(format!("recv {m:?}"));
        match m.kind {
            Kind::Invite { initial: true } => {
                self.peers[to].media = Some(Media::callee(m.body));
                self.peers[to].invite_in = Some(true);
            }
            Kind::Invite { initial: false } => {
                let busy = self.peers[to].invite_in.is_some() || self.peers[to].invite_out;
                if busy {
                    // the core refuses a second INVITE transaction (§14.2)
                    self.send(to, msg(Kind::InviteRefused(491), false));
                    return;
                }
                match self.media(to).received(Message::Invite, m.body) {
                    Err(e) => {
                        let status = if e == OfferAnswerError::Glare {
                            491
                        } else {
                            500
                        };
                        self.send(to, msg(Kind::InviteRefused(status), false));
                    }
                    Ok(_) => {
                        self.peers[to].invite_in = Some(false);
                        self.answer_invite(to);
                    }
                }
            }
            Kind::Provisional { reliable } => {
                let mut answer = false;
                if m.body && self.peers[to].invite_out {
                    let r = self
                        .media(to)
                        .received(Message::Provisional { reliable }, true);
                    match r {
                        Ok(Some(Received::Answer)) => {
                            // early media: an answer that fails leaves the offer open
                            self.pump(to);
                        }
                        Ok(Some(Received::Offer)) => {
                            // our answer goes in the PRACK
                            answer = self.respond(to, Message::Prack) == Some(true);
                            if !answer {
                                self.media(to).rollback();
                                self.pump(to);
                            }
                        }
                        _ => {}
                    }
                }
                if reliable {
                    self.send(to, msg(Kind::Prack, answer));
                }
            }
            Kind::Prack => {
                match self.media(to).received(Message::Prack, m.body) {
                    Ok(Some(Received::Answer)) => {
                        let applied = self.pump(to).0;
                        if !applied {
                            // as for an UPDATE's answer: the sides' counts part
                            self.media(to).rollback();
                            self.pump(to);
                            self.diverged = true;
                        }
                    }
                    // a reliable 1xx whose offer got no answer: the exchange fails
                    Ok(None)
                        if matches!(
                            self.media(to).state(),
                            OfferAnswer::LocalOffer(Message::Provisional { .. })
                        ) =>
                    {
                        self.media(to).rollback();
                        self.pump(to);
                    }
                    _ => {}
                }
                self.peers[to].prack_due = false;
                self.send(to, msg(Kind::PrackOk, false));
            }
            Kind::PrackOk => {}
            Kind::InviteOk => {
                if !self.peers[to].invite_out {
                    return;
                }
                self.peers[to].invite_out = false;
                self.peers[to].confirmed = true;
                let r = self.media(to).received(Message::Success, m.body);
                let ack = match r {
                    Ok(Some(Received::Offer)) => self.respond(to, Message::Ack),
                    Ok(Some(Received::Answer)) => self.pump(to).0.then_some(false),
                    Ok(_) => Some(false),
                    Err(_) => {
                        self.pump(to);
                        None
                    }
                };
                self.send(to, msg(Kind::Ack, ack == Some(true)));
                match ack {
                    Some(_) => {
                        self.media(to).confirm();
                        self.pump(to);
                    }
                    // negotiation failed: ACK, then BYE
                    None => self.end(),
                }
            }
            Kind::InviteRefused(_) => {
                if !self.peers[to].invite_out {
                    return;
                }
                self.peers[to].invite_out = false;
                self.media(to).refused(Message::Invite);
                self.pump(to);
                if !self.peers[to].confirmed {
                    self.peers[to].ended = true;
                }
            }
            Kind::Ack => {
                self.peers[to].ack_due = false;
                if self.media(to).state() != OfferAnswer::LocalOffer(Message::Success) {
                    self.media(to).confirm();
                    self.pump(to);
                    return;
                }
                let r = self.media(to).received(Message::Ack, m.body);
                let applied = r.is_ok() && self.pump(to).0;
                if !applied {
                    self.pump(to);
                    self.end();
                    return;
                }
                self.media(to).confirm();
                self.pump(to);
            }
            Kind::Update => {
                let reply = match self.media(to).received(Message::Update, true) {
                    Ok(_) => match self.respond(to, Message::UpdateSuccess) {
                        Some(body) => msg(Kind::UpdateOk, body),
                        None => msg(Kind::UpdateRefused(488), false),
                    },
                    Err(OfferAnswerError::Glare) => msg(Kind::UpdateRefused(491), false),
                    Err(_) => msg(Kind::UpdateRefused(500), false),
                };
                self.send(to, reply);
            }
            Kind::UpdateOk => {
                if !self.peers[to].update_out {
                    return;
                }
                self.peers[to].update_out = false;
                let r = self.media(to).received(Message::UpdateSuccess, m.body);
                assert!(
                    matches!(r, Ok(Some(Received::Answer))),
                    "{r:?}\n{}",
                    self.dump()
                );
                if !self.pump(to).0 {
                    // an answer we cannot apply: our side rolls back while the peer's
                    // exchange completed, so the counts part (an application would offer
                    // again or end the call)
                    self.media(to).rollback();
                    self.pump(to);
                    self.diverged = true;
                }
            }
            Kind::UpdateRefused(_) => {
                if !self.peers[to].update_out {
                    return;
                }
                self.peers[to].update_out = false;
                self.media(to).refused(Message::Update);
                self.pump(to);
            }
            Kind::Cancel => {
                if self.peers[to].invite_in == Some(true) {
                    self.peers[to].invite_in = None;
                    self.send(to, msg(Kind::InviteRefused(487), false));
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
            let to = self.pick(2) as usize;
            if self.wire[1 - to].is_empty() {
                self.deliver(1 - to);
            } else {
                self.deliver(to);
            }
        }
        self.check(0);
        self.check(1);
    }
}

fn settle(w: &mut World) {
    for _ in 0..400 {
        if w.wire.iter().all(VecDeque::is_empty) {
            let waiting = (0..2).find(|&p| w.peers[p].invite_in.is_some() && !w.peers[p].ended);
            let Some(p) = waiting else { return };
            w.peers[p].prack_due = false;
            w.answer_invite(p);
        }
        w.step(false);
    }
    panic!("the network did not drain\n{}", w.dump());
}

#[test]
fn the_handler_is_only_asked_what_its_state_allows_and_ends_in_step() {
    let (mut exchanged, mut asks, mut failures) = (0u64, 0u64, 0u64);
    for seed in 0..4000u64 {
        let mut w = World::new(seed);
        while !w.act(0) {}
        for _ in 0..(40 + seed % 80) {
            w.step(true);
        }
        settle(&mut w);
        asks += w.asks;
        failures += w.failures;
        let [a, b] = &w.peers;
        if a.ended || b.ended || b.media.is_none() {
            assert!(!(a.media.as_ref().unwrap().busy()), "seed {seed}");
            continue;
        }
        let (ma, mb) = (a.media.as_ref().unwrap(), b.media.as_ref().unwrap());
        for (m, p) in [(ma, a), (mb, b)] {
            assert_eq!(m.state(), OfferAnswer::Stable, "seed {seed}\n{}", w.dump());
            assert_eq!(p.held, Held::Stable, "seed {seed}\n{}", w.dump());
        }
        if w.diverged {
            continue;
        }
        assert_eq!(
            ma.negotiation().exchanges(),
            mb.negotiation().exchanges(),
            "seed {seed}\n{}",
            w.dump()
        );
        exchanged += u64::from(ma.negotiation().exchanges());
    }
    assert!(exchanged > 3000, "{exchanged} exchanges");
    assert!(
        asks > 20_000 && failures > 1000,
        "{asks} asks, {failures} failed"
    );
}

/// Any entry point in any order, with asks drained or failed at random: never a panic, at
/// most three asks queued, and a roll-back is the only ask after a failure.
#[test]
fn a_rogue_driver_never_overflows_or_panics() {
    let messages = Message::ALL;
    let mut rng = Rng::new(7);
    for run in 0..3000 {
        let mut media = match run % 3 {
            0 => Media::new(),
            1 => Media::callee(true),
            _ => Media::callee(false),
        };
        for _ in 0..60 {
            let m = messages[(rng.next_u64() % messages.len() as u64) as usize];
            let body = rng.next_u64().is_multiple_of(2);
            match rng.next_u64() % 10 {
                0 => drop(media.offer(m)),
                1 => drop(media.respond(m)),
                2 => media.sent(m, body),
                3 => media.not_sent(),
                4 => drop(media.received(m, body)),
                5 => media.rollback(),
                6 => media.refused(m),
                7 => media.confirm(),
                8 => media.replace_answer(m),
                _ => drop(media.replace_offer(m)),
            }
            // drain, failing at random
            let mut n = 0;
            while let Some(ask) = media.poll_ask() {
                n += 1;
                assert!(n <= 3, "more than three asks in a run");
                if rng.next_u64().is_multiple_of(5) {
                    media.failed();
                    while let Some(after) = media.poll_ask() {
                        assert_eq!(after, Ask::Rollback, "after {ask:?}");
                    }
                    break;
                }
            }
            assert!(!media.busy());
        }
    }
}
