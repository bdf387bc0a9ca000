//! Subscription dialogs in the core (RFC 6665, RFC 3515): a SUBSCRIBE answered 202 creates a
//! dialog on both sides, a NOTIFY that overtakes the 202 creates it on the subscriber's side,
//! refreshes travel inside it, and the dialog ends when the TU ends it. Two cores over the
//! simulated network, and one core fed raw messages for the NOTIFY-first case.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::{Header, HeaderName, Message, Method, Request, Transport};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::{Config, Received};
use sipua_proto::sim::{LinkConfig, Sim};
use sipua_proto::ua::{OutOfDialog, UaConfig, UaCore, UaEvent};

const ALICE: &str = "192.0.2.1:5060";
const BOB: &str = "192.0.2.2:5070";

fn ua(addr: &str, user: &str, seed: u64) -> UaCore {
    let base = UaConfig::new(addr.parse().unwrap(), Transport::Udp, user);
    UaCore::new(UaConfig {
        endpoint: Config {
            seed,
            ..Config::default()
        },
        seed,
        ..base
    })
}

fn event(name: &str) -> Header {
    Header::new(HeaderName::Event, name.to_owned())
}

fn state(value: &str) -> Header {
    Header::new(HeaderName::SubscriptionState, value.to_owned())
}

#[derive(Default)]
struct Log {
    /// (node, what) in the order seen.
    seen: Vec<(usize, String)>,
    alice_dialog: Option<DialogId>,
    bob_dialog: Option<DialogId>,
}

/// Alice subscribes to Bob's presence; Bob answers 202, NOTIFYs at once, and answers every
/// later SUBSCRIBE with 200 and a NOTIFY (terminated when Expires is 0).
fn subscribe_run(seed: u64, link: LinkConfig) -> (Sim<UaCore>, Log) {
    let mut sim: Sim<UaCore> = Sim::new(seed, Instant::now(), link);
    let a = sim.add(ALICE.parse().unwrap(), ua(ALICE, "alice", seed));
    sim.add(BOB.parse().unwrap(), ua(BOB, "bob", seed ^ 0xb0b));
    let bob: SocketAddr = BOB.parse().unwrap();
    let alice: SocketAddr = ALICE.parse().unwrap();
    let start = sim.now;
    let opts = OutOfDialog {
        headers: vec![event("presence"), Header::new(HeaderName::Expires, "600")],
        ..OutOfDialog::default()
    };
    sim.endpoint(a)
        .send_request_with(
            start,
            Method::Subscribe,
            format!("sip:bob@{BOB}").parse().unwrap(),
            bob,
            opts,
        )
        .unwrap();
    let log = RefCell::new(Log::default());
    let mut tu = |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| {
        let mut log = log.borrow_mut();
        match ev {
            UaEvent::Request {
                id,
                request,
                dialog,
            } => {
                log.seen.push((
                    node,
                    format!("{} in_dialog={}", request.method(), dialog.is_some()),
                ));
                if node == 0 {
                    // Alice: every NOTIFY is welcome
                    if let Some(d) = dialog {
                        log.alice_dialog.get_or_insert(d);
                    }
                    let r = ua.response(id, 200).unwrap();
                    ua.respond(now, id, r).unwrap();
                    return;
                }
                let ending = request
                    .typed::<sipua_message::header::Expires>()
                    .is_some_and(|e| e.is_ok_and(|e| e.0 == 0));
                let status = if dialog.is_none() { 202 } else { 200 };
                let mut r = ua.response(id, status).unwrap();
                r.push_header(Header::new(
                    HeaderName::Expires,
                    if ending { "0" } else { "600" },
                ))
                .unwrap();
                let created = ua.respond(now, id, r).unwrap();
                let d = created.or(dialog).expect("the SUBSCRIBE's dialog");
                log.bob_dialog = Some(d.clone());
                let sub_state = if ending {
                    "terminated;reason=timeout"
                } else {
                    "active;expires=600"
                };
                ua.request_in_dialog_with(
                    now,
                    &d,
                    Method::Notify,
                    alice,
                    vec![event("presence"), state(sub_state)],
                    Some((
                        sipua_message::header::MediaType::new("application", "pidf+xml"),
                        Bytes::from_static(b"<presence/>"),
                    )),
                )
                .unwrap();
                if ending {
                    ua.end_dialog(&d);
                }
            }
            UaEvent::Response {
                response, dialog, ..
            } => {
                log.seen.push((
                    node,
                    format!("{} {}", response.status(), response.cseq().method),
                ));
                if node == 0 && response.cseq().method == Method::Subscribe {
                    if let Some(d) = dialog {
                        log.alice_dialog.get_or_insert(d);
                    }
                }
            }
            other => log.seen.push((node, format!("{other:?}"))),
        }
    };
    sim.run_until(start + Duration::from_secs(40), &mut tu);
    // the refresh, then the unsubscribe, both inside the dialog
    for expires in ["600", "0"] {
        let d = log.borrow().alice_dialog.clone();
        let d = d.unwrap_or_else(|| panic!("alice's dialog: {:?}", log.borrow().seen));
        let now = sim.now;
        sim.endpoint(a)
            .request_in_dialog_with(
                now,
                &d,
                Method::Subscribe,
                bob,
                vec![event("presence"), Header::new(HeaderName::Expires, expires)],
                None,
            )
            .unwrap();
        sim.run_until(now + Duration::from_secs(40), &mut tu);
    }
    (sim, log.into_inner())
}

fn count(log: &Log, node: usize, what: &str) -> usize {
    log.seen
        .iter()
        .filter(|(n, w)| *n == node && w == what)
        .count()
}

#[test]
fn subscribe_notify_refresh_and_unsubscribe_share_one_dialog() {
    let (mut sim, log) = subscribe_run(1, LinkConfig::default());
    let (da, db) = (
        log.alice_dialog.clone().unwrap(),
        log.bob_dialog.clone().unwrap(),
    );
    assert_eq!(da.call_id, db.call_id);
    assert_eq!(
        (&da.local_tag, &da.remote_tag),
        (&db.remote_tag, &db.local_tag)
    );
    // the first NOTIFY already belongs to the dialog; so do both re-SUBSCRIBEs
    assert_eq!(count(&log, 0, "NOTIFY in_dialog=true"), 3, "{:?}", log.seen);
    assert_eq!(count(&log, 1, "SUBSCRIBE in_dialog=false"), 1);
    assert_eq!(count(&log, 1, "SUBSCRIBE in_dialog=true"), 2);
    assert_eq!(count(&log, 0, "202 SUBSCRIBE"), 1);
    assert_eq!(count(&log, 0, "200 SUBSCRIBE"), 2);
    assert_eq!(count(&log, 1, "200 NOTIFY"), 3);
    // Alice's CSeq went 1, 2, 3; Bob's NOTIFYs 1, 2, 3
    assert_eq!(sim.endpoint(0).dialog(&da).unwrap().local_seq, Some(3));
    assert_eq!(sim.endpoint(0).dialog(&da).unwrap().remote_seq, Some(3));
    // Bob ended the dialog with the terminating NOTIFY; Alice's TU ends hers
    assert!(sim.endpoint(1).dialog(&db).is_none());
    sim.endpoint(0).end_dialog(&da);
    assert_eq!(sim.endpoint(0).dialogs(), 0);
}

#[test]
fn subscriptions_survive_20_percent_loss_on_every_seed() {
    for seed in 0..30 {
        let link = LinkConfig {
            loss: 0.2,
            ..LinkConfig::default()
        };
        let (_, log) = subscribe_run(seed, link);
        assert!(log.alice_dialog.is_some(), "seed {seed}: {:?}", log.seen);
        assert_eq!(
            count(&log, 0, "200 SUBSCRIBE"),
            2,
            "seed {seed}: {:?}",
            log.seen
        );
        // a NOTIFY may arrive twice only as a retransmission the transaction absorbs
        assert_eq!(
            count(&log, 0, "NOTIFY in_dialog=true"),
            3,
            "seed {seed}: {:?}",
            log.seen
        );
    }
}

/// Alice's core alone: her SUBSCRIBE goes out, and what comes back is written by hand.
fn alice_subscribed() -> (UaCore, Instant, Request) {
    let mut alice = ua(ALICE, "alice", 7);
    let now = Instant::now();
    let opts = OutOfDialog {
        headers: vec![event("dialog")],
        ..OutOfDialog::default()
    };
    alice
        .send_request_with(
            now,
            Method::Subscribe,
            format!("sip:bob@{BOB}").parse().unwrap(),
            BOB.parse().unwrap(),
            opts,
        )
        .unwrap();
    let sent = alice.poll_transmit().expect("the SUBSCRIBE");
    let Ok(Message::Request(subscribe)) = Message::parse(&sent.bytes) else {
        panic!("not a request");
    };
    (alice, now, subscribe)
}

fn notify_for(subscribe: &Request, from_tag: &str, cseq: u32, content_type: &str) -> Bytes {
    let tag = subscribe.from_tag().unwrap();
    let body = "<dialog-info/>";
    Bytes::from(format!(
        "NOTIFY sip:alice@{ALICE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {BOB};branch=z9hG4bK-n{cseq}-{from_tag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:bob@{BOB}>;tag={from_tag}\r\n\
         To: <sip:alice@{ALICE}>;tag={tag}\r\n\
         Call-ID: {}\r\n\
         CSeq: {cseq} NOTIFY\r\n\
         Contact: <sip:bob@{BOB};transport=udp>\r\n\
         Event: dialog\r\n\
         Subscription-State: active;expires=300\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        subscribe.call_id(),
        body.len()
    ))
}

fn feed(core: &mut UaCore, now: Instant, bytes: Bytes) {
    core.handle_datagram(
        now,
        Received {
            transport: Transport::Udp,
            remote: BOB.parse().unwrap(),
            bytes,
        },
    );
}

fn answered_status(core: &mut UaCore) -> u16 {
    let t = core.poll_transmit().expect("an answer");
    match Message::parse(&t.bytes).unwrap() {
        Message::Response(r) => r.status(),
        Message::Request(r) => panic!("sent {} instead of answering", r.method()),
    }
}

#[test]
fn a_notify_before_the_2xx_creates_the_dialog_and_forks_make_their_own() {
    let (mut alice, now, subscribe) = alice_subscribed();
    // a package body outside Accept is the subscriber's to judge, not a 415
    feed(
        &mut alice,
        now,
        notify_for(&subscribe, "fork1", 1, "application/dialog-info+xml"),
    );
    let Some(UaEvent::Request {
        id,
        request,
        dialog: Some(d1),
    }) = alice.poll_event()
    else {
        panic!("the NOTIFY did not reach the TU in a dialog");
    };
    assert_eq!(*request.method(), Method::Notify);
    assert_eq!(&*d1.remote_tag, "fork1");
    let r = alice.response(id, 200).unwrap();
    alice.respond(now, id, r).unwrap();
    assert_eq!(answered_status(&mut alice), 200);
    // a second notifier (a fork) gets a dialog of its own
    feed(
        &mut alice,
        now,
        notify_for(&subscribe, "fork2", 5, "application/dialog-info+xml"),
    );
    let Some(UaEvent::Request {
        dialog: Some(d2), ..
    }) = alice.poll_event()
    else {
        panic!("the forked NOTIFY made no dialog");
    };
    assert_eq!(&*d2.remote_tag, "fork2");
    assert_eq!(alice.dialogs(), 2);
    // the dialog's requests go to the NOTIFY's Contact with the SUBSCRIBE's next CSeq
    alice
        .request_in_dialog_with(
            now,
            &d1,
            Method::Subscribe,
            BOB.parse().unwrap(),
            vec![event("dialog"), Header::new(HeaderName::Expires, "0")],
            None,
        )
        .unwrap();
    let t = alice.poll_transmit().expect("the refresh");
    let Ok(Message::Request(refresh)) = Message::parse(&t.bytes) else {
        panic!("not a request");
    };
    assert_eq!(
        refresh.uri().to_string(),
        format!("sip:bob@{BOB};transport=udp")
    );
    assert_eq!(refresh.cseq().seq, subscribe.cseq().seq + 1);
    assert_eq!(refresh.to_tag(), Some("fork1"));
    assert_eq!(refresh.call_id(), subscribe.call_id());
    // once the TU ends the dialog, its NOTIFYs get 481
    alice.end_dialog(&d1);
    feed(
        &mut alice,
        now,
        notify_for(&subscribe, "fork1", 2, "application/dialog-info+xml"),
    );
    assert!(alice.poll_event().is_none());
    assert_eq!(answered_status(&mut alice), 481);
}

#[test]
fn a_notify_for_a_subscribe_long_gone_gets_481() {
    let (mut alice, now, subscribe) = alice_subscribed();
    // 64·T1 later the SUBSCRIBE is forgotten: a NOTIFY no longer makes a dialog
    let later = now + Duration::from_secs(33);
    alice.handle_timeout(later);
    while alice.poll_event().is_some() {}
    while alice.poll_transmit().is_some() {}
    feed(
        &mut alice,
        later,
        notify_for(&subscribe, "late", 1, "text/plain"),
    );
    assert!(alice.poll_event().is_none());
    assert_eq!(answered_status(&mut alice), 481);
    assert_eq!(alice.dialogs(), 0);
}

#[test]
fn a_subscribe_without_contact_gets_400() {
    let mut bob = ua(BOB, "bob", 3);
    let now = Instant::now();
    let req = format!(
        "SUBSCRIBE sip:bob@{BOB} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bK-nocontact\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{ALICE}>;tag=a1\r\n\
         To: <sip:bob@{BOB}>\r\n\
         Call-ID: nocontact@x\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Event: presence\r\n\
         Content-Length: 0\r\n\r\n"
    );
    bob.handle_datagram(
        now,
        Received {
            transport: Transport::Udp,
            remote: ALICE.parse().unwrap(),
            bytes: Bytes::from(req),
        },
    );
    assert!(bob.poll_event().is_none());
    assert_eq!(answered_status(&mut bob), 400);
}
