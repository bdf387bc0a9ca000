//! Whole calls between two UA cores over the simulated network: INVITE, 180, 200, ACK, BYE,
//! 200, with loss, duplication and reordering, over many seeds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipua_message::{Method, Transport};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::Config;
use sipua_proto::sim::{LinkConfig, Sim};
use sipua_proto::ua::{UaConfig, UaCore, UaEvent};

const ALICE: &str = "192.0.2.1:5060";
const BOB: &str = "192.0.2.2:5070";

fn ua(addr: &str, user: &str, seed: u64, transport: Transport) -> UaCore {
    let base = UaConfig::new(addr.parse().unwrap(), transport, user);
    UaCore::new(UaConfig {
        endpoint: Config {
            seed,
            ..Config::default()
        },
        seed,
        ..base
    })
}

#[derive(Default, Debug)]
struct Outcome {
    alice_dialog: Option<DialogId>,
    alice_got: Vec<String>,
    bob_got: Vec<String>,
}

fn describe(ev: &UaEvent) -> String {
    match ev {
        UaEvent::Request {
            request, dialog, ..
        } => format!(
            "request {} in_dialog={}",
            request.method(),
            dialog.is_some()
        ),
        UaEvent::Response { response, .. } => {
            format!("response {} {}", response.status(), response.cseq().method)
        }
        UaEvent::Ack { .. } => "ack".into(),
        UaEvent::AckTimeout { .. } => "ack timeout".into(),
        UaEvent::Cancelled { .. } => "cancelled".into(),
        UaEvent::Timeout { .. } => "timeout".into(),
        UaEvent::TransportError { .. } => "transport error".into(),
        UaEvent::Prack { .. } => "prack".into(),
        UaEvent::PrackTimeout { .. } => "prack timeout".into(),
    }
}

/// Alice calls Bob; Bob rings and answers; Alice hangs up after two seconds.
fn call(seed: u64, link: LinkConfig, transport: Transport) -> (Sim<UaCore>, Outcome) {
    let mut sim: Sim<UaCore> = Sim::new(seed, Instant::now(), link);
    let a = sim.add(
        ALICE.parse().unwrap(),
        ua(ALICE, "alice", seed, transport.clone()),
    );
    let b = sim.add(
        BOB.parse().unwrap(),
        ua(BOB, "bob", seed ^ 0xb0b, transport),
    );
    let start = sim.now;
    let bob: SocketAddr = BOB.parse().unwrap();
    sim.endpoint(a)
        .invite(start, format!("sip:bob@{BOB}").parse().unwrap(), bob, None)
        .unwrap();
    let out = std::cell::RefCell::new(Outcome::default());
    let mut tu = |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| {
        let mut out = out.borrow_mut();
        if node == a {
            out.alice_got.push(describe(&ev));
            if let UaEvent::Response {
                response,
                dialog: Some(d),
                ..
            } = &ev
            {
                if response.is_success() && response.cseq().method == Method::Invite {
                    out.alice_dialog = Some(d.clone());
                }
            }
        } else {
            out.bob_got.push(describe(&ev));
            if let UaEvent::Request { id, request, .. } = &ev {
                let status = if *request.method() == Method::Invite {
                    180
                } else {
                    200
                };
                let resp = ua.response(*id, status).unwrap();
                ua.respond(now, *id, resp).unwrap();
                if status == 180 {
                    let ok = ua.response(*id, 200).unwrap();
                    ua.respond(now, *id, ok).unwrap();
                }
            }
        }
    };
    // wait for the call to be up (the 200 may need retransmissions)
    let mut t = start;
    while out.borrow().alice_dialog.is_none() && t < start + Duration::from_secs(40) {
        t += Duration::from_secs(2);
        sim.run_until(t, &mut tu);
    }
    let dialog = out.borrow().alice_dialog.clone();
    if let Some(d) = dialog {
        let now = sim.now;
        sim.endpoint(a)
            .request_in_dialog(now, &d, Method::Bye, bob)
            .unwrap();
    }
    sim.run_until(t + Duration::from_secs(70), &mut tu);
    let _ = b;
    (sim, out.into_inner())
}

fn check(seed: u64, sim: &mut Sim<UaCore>, out: &Outcome) {
    let ctx = || {
        format!(
            "seed {seed}: alice {:?} bob {:?}",
            out.alice_got, out.bob_got
        )
    };
    assert!(out.alice_dialog.is_some(), "call never answered: {}", ctx());
    assert!(
        out.alice_got.iter().any(|e| e == "response 200 BYE"),
        "{}",
        ctx()
    );
    assert!(
        out.bob_got
            .iter()
            .any(|e| e == "request BYE in_dialog=true"),
        "{}",
        ctx()
    );
    assert_eq!(
        out.bob_got
            .iter()
            .filter(|e| e.starts_with("request INVITE"))
            .count(),
        1,
        "{}",
        ctx()
    );
    for bad in ["timeout", "ack timeout", "transport error"] {
        assert!(
            !out.alice_got.iter().chain(&out.bob_got).any(|e| e == bad),
            "{bad}: {}",
            ctx()
        );
    }
    for i in 0..2 {
        assert_eq!(sim.endpoint(i).dialogs(), 0, "{}", ctx());
        assert_eq!(sim.endpoint(i).transactions(), 0, "{}", ctx());
    }
}

#[test]
fn call_on_a_clean_link() {
    let (mut sim, out) = call(1, LinkConfig::default(), Transport::Udp);
    check(1, &mut sim, &out);
    assert_eq!(
        out.bob_got,
        vec![
            "request INVITE in_dialog=false",
            "ack",
            "request BYE in_dialog=true"
        ],
        "the ACK for the 2xx reaches Bob's core"
    );
    assert_eq!(
        out.alice_got,
        vec![
            "response 100 INVITE",
            "response 180 INVITE",
            "response 200 INVITE",
            "response 200 BYE"
        ]
    );
    // INVITE, 100, 180, 200, ACK, BYE, 200
    assert_eq!(sim.stats.sent, 7);
}

#[test]
fn call_over_tcp() {
    let (mut sim, out) = call(2, LinkConfig::default(), Transport::Tcp);
    check(2, &mut sim, &out);
    assert_eq!(sim.stats.sent, 7);
}

#[test]
fn calls_complete_at_20_percent_loss_on_every_seed() {
    let lossy = LinkConfig {
        loss: 0.2,
        duplicate: 0.05,
        jitter: Duration::from_millis(40),
        ..LinkConfig::default()
    };
    let mut lost = 0;
    for seed in 0..250 {
        let (mut sim, out) = call(seed, lossy, Transport::Udp);
        check(seed, &mut sim, &out);
        lost += sim.stats.lost;
    }
    assert!(lost > 250, "the network really lost messages ({lost})");
}

#[test]
fn a_2xx_that_is_never_acked_ends_in_ack_timeout() {
    // Bob's ACKs never reach him: the link from Alice to Bob drops everything after the INVITE
    let mut sim: Sim<UaCore> = Sim::new(5, Instant::now(), LinkConfig::default());
    let a = sim.add(
        ALICE.parse().unwrap(),
        ua(ALICE, "alice", 5, Transport::Udp),
    );
    sim.add(BOB.parse().unwrap(), ua(BOB, "bob", 6, Transport::Udp));
    let start = sim.now;
    let bob: SocketAddr = BOB.parse().unwrap();
    sim.endpoint(a)
        .invite(start, format!("sip:bob@{BOB}").parse().unwrap(), bob, None)
        .unwrap();
    let mut bob_events = Vec::new();
    let mut alice_events = Vec::new();
    // the INVITE arrives at 10 ms and is answered at once; the ACK would arrive at 30 ms
    sim.run_until(
        start + Duration::from_millis(15),
        &mut |node, ua, now, ev| {
            if let (1, UaEvent::Request { id, .. }) = (node, &ev) {
                let ok = ua.response(*id, 200).unwrap();
                ua.respond(now, *id, ok).unwrap();
            }
        },
    );
    let alice: SocketAddr = ALICE.parse().unwrap();
    sim.set_link(
        alice,
        bob,
        LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        },
    );
    sim.run_until(
        start + Duration::from_secs(40),
        &mut |node, _ua, _now, ev| {
            if node == 1 {
                bob_events.push(describe(&ev));
            } else {
                alice_events.push(describe(&ev));
            }
        },
    );
    assert_eq!(
        bob_events,
        vec!["ack timeout"],
        "Bob retransmitted the 200 for 64·T1, then gave up"
    );
    assert!(
        alice_events.contains(&"request BYE in_dialog=true".to_string()),
        "and ended the session with BYE: {alice_events:?}"
    );
    assert!(
        sim.stats.lost >= 10,
        "Alice kept re-ACKing the retransmitted 200s ({})",
        sim.stats.lost
    );
}

/// A TU that answers every request with 200 and remembers each side's dialog.
#[derive(Default)]
struct Answering {
    log: std::cell::RefCell<Vec<(usize, String)>>,
    dialogs: std::cell::RefCell<[Option<DialogId>; 2]>,
}

impl Answering {
    fn on(&self, node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent) {
        self.log.borrow_mut().push((node, describe(&ev)));
        match ev {
            UaEvent::Request { id, .. } => {
                let ok = ua.response(id, 200).unwrap();
                if let Ok(Some(d)) = ua.respond(now, id, ok) {
                    self.dialogs.borrow_mut()[node] = Some(d);
                }
            }
            UaEvent::Response {
                response,
                dialog: Some(d),
                ..
            } if response.is_success() => {
                self.dialogs.borrow_mut()[node] = Some(d);
            }
            _ => {}
        }
    }
}

/// Alice (node 0) calls Bob (node 1), who answers at once; returns after a second, call up.
fn established(seed_a: u64, seed_b: u64) -> (Sim<UaCore>, Answering) {
    let mut sim: Sim<UaCore> = Sim::new(seed_a, Instant::now(), LinkConfig::default());
    let a = sim.add(
        ALICE.parse().unwrap(),
        ua(ALICE, "alice", seed_a, Transport::Udp),
    );
    sim.add(BOB.parse().unwrap(), ua(BOB, "bob", seed_b, Transport::Udp));
    let start = sim.now;
    sim.endpoint(a)
        .invite(
            start,
            format!("sip:bob@{BOB}").parse().unwrap(),
            BOB.parse().unwrap(),
            None,
        )
        .unwrap();
    let ans = Answering::default();
    sim.run_until(start + Duration::from_secs(1), &mut |n, ua, now, ev| {
        ans.on(n, ua, now, ev)
    });
    (sim, ans)
}

#[test]
fn reinvite_glare_gets_491_on_both_sides_then_backoff_succeeds() {
    let (mut sim, ans) = established(8, 9);
    let (a, b) = (0, 1);
    let (alice, bob): (SocketAddr, SocketAddr) = (ALICE.parse().unwrap(), BOB.parse().unwrap());
    let mut tu =
        |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| ans.on(node, ua, now, ev);
    let (log, [da, db]) = (&ans.log, ans.dialogs.borrow().clone());
    let (da, db) = (da.expect("alice's dialog"), db.expect("bob's dialog"));
    // both re-INVITE at the same instant
    let now = sim.now;
    sim.endpoint(a)
        .request_in_dialog(now, &da, Method::Invite, bob)
        .unwrap();
    sim.endpoint(b)
        .request_in_dialog(now, &db, Method::Invite, alice)
        .unwrap();
    log.borrow_mut().clear();
    sim.run_until(now + Duration::from_secs(1), &mut tu);
    let got: Vec<(usize, String)> = log.borrow().clone();
    assert!(got.contains(&(a, "response 491 INVITE".into())), "{got:?}");
    assert!(got.contains(&(b, "response 491 INVITE".into())), "{got:?}");
    assert!(
        !got.iter().any(|(_, e)| e.starts_with("request")),
        "the cores answered the glare: {got:?}"
    );
    // Alice chose the Call-ID: she waits 2.1–4 s; Bob 0–2 s
    let wait_a = sim.endpoint(a).glare_backoff(&da);
    let wait_b = sim.endpoint(b).glare_backoff(&db);
    assert!(
        wait_a >= Duration::from_millis(2100) && wait_a <= Duration::from_secs(4),
        "{wait_a:?}"
    );
    assert!(wait_b <= Duration::from_secs(2), "{wait_b:?}");
    let now = sim.now;
    sim.endpoint(a)
        .request_in_dialog(now, &da, Method::Invite, bob)
        .unwrap();
    log.borrow_mut().clear();
    sim.run_until(now + Duration::from_secs(1), &mut tu);
    let got: Vec<(usize, String)> = log.borrow().clone();
    assert!(
        got.contains(&(b, "request INVITE in_dialog=true".into())),
        "{got:?}"
    );
    assert!(got.contains(&(a, "response 200 INVITE".into())), "{got:?}");
    assert!(got.contains(&(b, "ack".into())), "{got:?}");
    assert_eq!(sim.endpoint(a).dialogs(), 1);
}

/// Alice invites Bob, who only rings; `cancel_at` after the start Alice cancels, and when
/// `bob_answers` Bob answers 200 at that same instant.
fn cancel_scenario(cancel_at: Duration, bob_answers: bool) -> (Sim<UaCore>, Vec<(usize, String)>) {
    let mut sim: Sim<UaCore> = Sim::new(12, Instant::now(), LinkConfig::default());
    let a = sim.add(
        ALICE.parse().unwrap(),
        ua(ALICE, "alice", 12, Transport::Udp),
    );
    let b = sim.add(BOB.parse().unwrap(), ua(BOB, "bob", 13, Transport::Udp));
    let start = sim.now;
    let invite = sim
        .endpoint(a)
        .invite(
            start,
            format!("sip:bob@{BOB}").parse().unwrap(),
            BOB.parse().unwrap(),
            None,
        )
        .unwrap();
    let log = std::cell::RefCell::new(Vec::<(usize, String)>::new());
    let pending = std::cell::RefCell::new(None);
    let mut tu = |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| {
        log.borrow_mut().push((node, describe(&ev)));
        if let (1, UaEvent::Request { id, request, .. }) = (node, &ev) {
            let status = if *request.method() == Method::Invite {
                180
            } else {
                200
            };
            let r = ua.response(*id, status).unwrap();
            ua.respond(now, *id, r).unwrap();
            if status == 180 {
                *pending.borrow_mut() = Some(*id);
            }
        }
    };
    sim.run_until(start + cancel_at, &mut tu);
    let now = sim.now;
    sim.endpoint(a).cancel(now, invite, Vec::new()).unwrap();
    if bob_answers {
        let id = pending.borrow().expect("Bob got the INVITE");
        let ok = sim.endpoint(b).response(id, 200).unwrap();
        sim.endpoint(b).respond(now, id, ok).unwrap();
    }
    sim.run_until(start + Duration::from_secs(60), &mut tu);
    (sim, log.into_inner())
}

#[test]
fn cancel_after_180_gets_487() {
    let (mut sim, log) = cancel_scenario(Duration::from_millis(100), false);
    assert!(log.contains(&(1, "cancelled".into())), "{log:?}");
    assert!(log.contains(&(0, "response 487 INVITE".into())), "{log:?}");
    assert!(log.contains(&(0, "response 200 CANCEL".into())), "{log:?}");
    assert_eq!(
        sim.endpoint(0).dialogs() + sim.endpoint(1).dialogs(),
        0,
        "the early dialog ended with the 487"
    );
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    // at 5 ms nothing has come back yet; the CANCEL must wait for the 100 Trying (20 ms)
    let (_, log) = cancel_scenario(Duration::from_millis(5), false);
    assert!(log.contains(&(0, "response 487 INVITE".into())), "{log:?}");
}

#[test]
fn cancel_200_race_ends_in_ack_and_bye() {
    let (mut sim, log) = cancel_scenario(Duration::from_millis(100), true);
    assert!(log.contains(&(0, "response 200 INVITE".into())), "{log:?}");
    assert!(
        !log.contains(&(1, "cancelled".into())),
        "the CANCEL came too late to cancel: {log:?}"
    );
    assert!(log.contains(&(1, "ack".into())), "{log:?}");
    assert!(
        log.contains(&(1, "request BYE in_dialog=true".into())),
        "the core ended the unwanted call: {log:?}"
    );
    assert!(log.contains(&(0, "response 200 BYE".into())), "{log:?}");
    assert_eq!(sim.endpoint(0).dialogs() + sim.endpoint(1).dialogs(), 0);
}

#[test]
fn in_dialog_requests_from_each_side() {
    let (mut sim, ans) = established(14, 15);
    let (a, b) = (0, 1);
    let (alice, bob): (SocketAddr, SocketAddr) = (ALICE.parse().unwrap(), BOB.parse().unwrap());
    let mut tu =
        |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| ans.on(node, ua, now, ev);
    let (log, [da, db]) = (&ans.log, ans.dialogs.borrow().clone());
    let (da, db) = (da.expect("alice's dialog"), db.expect("bob's dialog"));
    let methods = [
        Method::Info,
        Method::Message,
        Method::Notify,
        Method::Refer,
        Method::Update,
        Method::Invite,
    ];
    for m in methods.iter() {
        for (from, d, to) in [(a, &da, bob), (b, &db, alice)] {
            log.borrow_mut().clear();
            let now = sim.now;
            sim.endpoint(from)
                .request_in_dialog(now, d, m.clone(), to)
                .unwrap();
            sim.run_until(now + Duration::from_secs(1), &mut tu);
            let got = log.borrow().clone();
            let other = 1 - from;
            assert!(
                got.contains(&(other, format!("request {m} in_dialog=true"))),
                "{m} from {from}: {got:?}"
            );
            assert!(
                got.contains(&(from, format!("response 200 {m}"))),
                "{m} from {from}: {got:?}"
            );
        }
    }
    // CSeq went up on each side, one per request
    assert_eq!(
        sim.endpoint(a).dialog(&da).unwrap().local_seq,
        Some(1 + methods.len() as u32)
    );
    assert_eq!(
        sim.endpoint(b).dialog(&db).unwrap().local_seq,
        Some(methods.len() as u32)
    );
    // a PRACK that acknowledges no reliable provisional of ours gets 481 (RFC 3262 §3)
    log.borrow_mut().clear();
    let now = sim.now;
    sim.endpoint(a)
        .request_in_dialog(now, &da, Method::Prack, bob)
        .unwrap();
    sim.run_until(now + Duration::from_secs(1), &mut tu);
    let got = log.borrow().clone();
    assert!(got.contains(&(a, "response 481 PRACK".into())), "{got:?}");
    assert!(!got.iter().any(|(n, _)| *n == b), "{got:?}");
}

/// RFC 3262 inside a confirmed dialog: Bob answers Alice's re-INVITE with a reliable 183,
/// Alice's core PRACKs it, and Bob's final 200 follows the PRACK (SIP.js has no PRACK on
/// re-INVITE at all). Clean and at 20 % loss.
fn prack_on_reinvite(seed: u64, loss: f64) -> Vec<(usize, String)> {
    let (mut sim, ans) = established(seed, seed ^ 0x5a5a);
    let da = ans.dialogs.borrow()[0].clone().expect("alice's dialog");
    sim.set_link(
        ALICE.parse().unwrap(),
        BOB.parse().unwrap(),
        LinkConfig {
            loss,
            ..LinkConfig::default()
        },
    );
    sim.set_link(
        BOB.parse().unwrap(),
        ALICE.parse().unwrap(),
        LinkConfig {
            loss,
            ..LinkConfig::default()
        },
    );
    let now = sim.now;
    sim.endpoint(0)
        .request_in_dialog(now, &da, Method::Invite, BOB.parse().unwrap())
        .unwrap();
    let log = std::cell::RefCell::new(Vec::new());
    let reinvite = std::cell::Cell::new(None);
    sim.run_until(now + Duration::from_secs(40), &mut |node, ua, now, ev| {
        log.borrow_mut().push((node, describe(&ev)));
        match ev {
            UaEvent::Request { id, request, .. }
                if node == 1 && *request.method() == Method::Invite =>
            {
                reinvite.set(Some(id));
                let r = ua.response(id, 183).unwrap();
                ua.respond_reliably(now, id, r).unwrap();
            }
            UaEvent::Prack { .. } if node == 1 => {
                let id = reinvite.get().expect("the re-INVITE");
                let ok = ua.response(id, 200).unwrap();
                ua.respond(now, id, ok).unwrap();
            }
            _ => {}
        }
    });
    log.into_inner()
}

#[test]
fn a_reinvite_answered_with_a_reliable_183_is_pracked_then_completes() {
    let log = prack_on_reinvite(21, 0.0);
    let alice: Vec<&String> = log
        .iter()
        .filter(|(n, s)| *n == 0 && s != "response 100 INVITE")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        alice,
        vec!["response 183 INVITE", "response 200 INVITE"],
        "{log:?}"
    );
    assert!(log.contains(&(1, "prack".into())), "{log:?}");
    for seed in 0..20 {
        let log = prack_on_reinvite(100 + seed, 0.2);
        assert!(
            log.contains(&(0, "response 200 INVITE".into())),
            "seed {seed}: {log:?}"
        );
        assert_eq!(
            log.iter()
                .filter(|e| **e == (1, "prack".to_string()))
                .count(),
            1,
            "seed {seed}: one PRACK reaches Bob's TU, retransmissions absorbed: {log:?}"
        );
    }
}
