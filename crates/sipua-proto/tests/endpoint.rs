//! Endpoints talking over the simulated network: transactions end to end, under loss.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::{
    Host, Message, Method, NameAddr, RequestBuilder, Response, Transport, Uri, Via,
};
use sipua_proto::endpoint::{Config, Endpoint, Event, Received, TransactionId};
use sipua_proto::sim::{LinkConfig, Sim};
use sipua_proto::transaction::State;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const ALICE: &str = "192.0.2.1:5060";
const BOB: &str = "192.0.2.2:5060";

fn request(method: Method, branch: &str, transport: Transport) -> sipua_message::Request {
    let alice = addr(ALICE);
    let uri: Uri = format!("sip:bob@{BOB}").parse().unwrap();
    RequestBuilder::new(method, uri.clone())
        .via(Via::new(
            transport,
            Host::from(alice.ip()),
            Some(alice.port()),
            &format!("z9hG4bK{branch}"),
        ))
        .from(format!("<sip:alice@{ALICE}>;tag=a1").parse().unwrap())
        .to(NameAddr::new(uri))
        .call_id(format!("{branch}@alice"))
        .cseq(1)
        .build()
        .unwrap()
}

fn sim(seed: u64, link: LinkConfig) -> (Sim, usize, usize) {
    let mut s = Sim::new(seed, Instant::now(), link);
    let a = s.add(addr(ALICE), Endpoint::new(Config::default()));
    let b = s.add(addr(BOB), Endpoint::new(Config::default()));
    (s, a, b)
}

/// Every event, in order, as text (for determinism checks and failure messages).
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn note(&mut self, node: usize, now: Instant, start: Instant, ev: &Event) {
        let what = match ev {
            Event::Request { request, .. } => format!("request {}", request.method()),
            Event::Ack { .. } => "ack".into(),
            Event::Cancelled { .. } => "cancelled".into(),
            Event::Response { response, .. } => {
                format!("response {} {}", response.status(), response.cseq().method)
            }
            Event::StrayResponse { response } => format!("stray {}", response.status()),
            Event::Timeout { .. } => "timeout".into(),
            Event::TransportError { .. } => "transport error".into(),
            Event::Malformed { error, .. } => format!("malformed {error}"),
        };
        self.0.push(format!(
            "{:>6} ms node {node}: {what}",
            (now - start).as_millis()
        ));
    }

    fn has(&self, node: usize, what: &str) -> bool {
        self.0
            .iter()
            .any(|l| l.contains(&format!("node {node}: {what}")))
    }
}

/// Bob answers every request with `status`; Alice sends one `method` request at time 0.
fn exchange(
    seed: u64,
    link: LinkConfig,
    method: Method,
    status: u16,
    transport: Transport,
) -> (Sim, Log) {
    let (mut s, a, b) = sim(seed, link);
    let start = s.now;
    s.endpoint(a)
        .send_request(
            start,
            request(method, &format!("s{seed}"), transport.clone()),
            transport,
            addr(BOB),
        )
        .unwrap();
    let mut log = Log::default();
    s.run_until(start + Duration::from_secs(60), &mut |node, ep, now, ev| {
        log.note(node, now, start, &ev);
        if let (true, Event::Request { id, request, .. }) = (node == b, &ev) {
            ep.respond(now, *id, Response::from_request(request, status))
                .unwrap();
        }
    });
    (s, log)
}

#[test]
fn options_gets_200_and_transactions_clean_up() {
    let (mut s, log) = exchange(
        1,
        LinkConfig::default(),
        Method::Options,
        200,
        Transport::Udp,
    );
    assert_eq!(
        log.0,
        vec![
            "    10 ms node 1: request OPTIONS".to_string(),
            "    20 ms node 0: response 200 OPTIONS".to_string()
        ]
    );
    assert_eq!(
        s.endpoint(0).transactions(),
        0,
        "Timer K ended the client transaction"
    );
    assert_eq!(
        s.endpoint(1).transactions(),
        0,
        "Timer J ended the server transaction"
    );
    assert_eq!(s.stats.sent, 2, "no retransmission on a clean link");
}

#[test]
fn non_invite_survives_20_percent_loss_on_every_seed() {
    let lossy = LinkConfig {
        loss: 0.2,
        duplicate: 0.05,
        jitter: Duration::from_millis(30),
        ..LinkConfig::default()
    };
    for seed in 0..300 {
        let (mut s, log) = exchange(seed, lossy, Method::Register, 200, Transport::Udp);
        assert!(
            log.has(0, "response 200 REGISTER"),
            "seed {seed}: {:#?}",
            log.0
        );
        assert!(!log.has(0, "timeout"), "seed {seed}");
        assert_eq!(
            log.0
                .iter()
                .filter(|l| l.contains("request REGISTER"))
                .count(),
            1,
            "retransmissions are absorbed"
        );
        assert_eq!(
            s.endpoint(0).transactions() + s.endpoint(1).transactions(),
            0,
            "seed {seed}"
        );
    }
}

#[test]
fn invite_rejected_is_acked_by_the_transactions_under_loss() {
    let lossy = LinkConfig {
        loss: 0.2,
        jitter: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    for seed in 0..200 {
        let (mut s, log) = exchange(seed, lossy, Method::Invite, 486, Transport::Udp);
        assert!(
            log.has(0, "response 486 INVITE"),
            "seed {seed}: {:#?}",
            log.0
        );
        assert!(
            !log.has(1, "timeout"),
            "seed {seed}: the ACK reached Bob's transaction (else Timer H)"
        );
        assert!(
            !log.has(1, "ack"),
            "the ACK of a non-2xx stays in the transaction layer"
        );
        assert_eq!(
            s.endpoint(0).transactions() + s.endpoint(1).transactions(),
            0,
            "seed {seed}"
        );
    }
}

#[test]
fn same_seed_same_run() {
    let lossy = LinkConfig {
        loss: 0.3,
        duplicate: 0.1,
        jitter: Duration::from_millis(50),
        ..LinkConfig::default()
    };
    let (s1, l1) = exchange(42, lossy, Method::Invite, 603, Transport::Udp);
    let (s2, l2) = exchange(42, lossy, Method::Invite, 603, Transport::Udp);
    assert_eq!(l1.0, l2.0);
    assert_eq!(s1.stats, s2.stats);
}

#[test]
fn reliable_transport_has_no_retransmissions() {
    let (s, log) = exchange(
        3,
        LinkConfig::default(),
        Method::Invite,
        480,
        Transport::Tcp,
    );
    assert!(log.has(0, "response 480 INVITE"));
    // INVITE, 100, 480, ACK
    assert_eq!(s.stats.sent, 4);
}

#[test]
fn unanswered_request_times_out_after_64_t1() {
    let (mut s, a, b) = sim(7, LinkConfig::default());
    let start = s.now;
    s.endpoint(a)
        .send_request(
            start,
            request(Method::Options, "t", Transport::Udp),
            Transport::Udp,
            addr(BOB),
        )
        .unwrap();
    let mut log = Log::default();
    s.run_until(
        start + Duration::from_secs(40),
        &mut |node, _ep, now, ev| log.note(node, now, start, &ev),
    );
    assert!(
        log.0.iter().any(|l| l.contains("32000 ms node 0: timeout")),
        "{:#?}",
        log.0
    );
    let _ = b;
}

#[test]
fn cancel_before_the_answer_gives_200_and_487() {
    let (mut s, a, b) = sim(9, LinkConfig::default());
    let start = s.now;
    let invite = request(Method::Invite, "c", Transport::Udp);
    let cancel = invite.cancel(&[]).unwrap();
    s.endpoint(a)
        .send_request(start, invite, Transport::Udp, addr(BOB))
        .unwrap();
    let mut log = Log::default();
    let mut invite_tx: Option<(TransactionId, sipua_message::Request)> = None;
    s.run_until(
        start + Duration::from_millis(100),
        &mut |node, ep, now, ev| {
            log.note(node, now, start, &ev);
            if let (true, Event::Request { id, request, .. }) = (node == b, &ev) {
                ep.respond(now, *id, Response::from_request(request, 180))
                    .unwrap();
                invite_tx = Some((*id, request.clone()));
            }
        },
    );
    let now = s.now;
    s.endpoint(a)
        .send_request(now, cancel, Transport::Udp, addr(BOB))
        .unwrap();
    s.run_until(start + Duration::from_secs(40), &mut |node, ep, now, ev| {
        log.note(node, now, start, &ev);
        if let (true, Event::Cancelled { id }) = (node == b, &ev) {
            let (tx, req) = invite_tx.clone().unwrap();
            assert_eq!(*id, tx);
            ep.respond(now, tx, Response::from_request(&req, 487))
                .unwrap();
        }
    });
    for want in [
        "node 1: request INVITE",
        "node 0: response 180 INVITE",
        "node 1: cancelled",
        "node 0: response 200 CANCEL",
        "node 0: response 487 INVITE",
    ] {
        assert!(
            log.0.iter().any(|l| l.contains(want)),
            "{want} missing: {:#?}",
            log.0
        );
    }
    assert!(
        !log.has(1, "request CANCEL"),
        "CANCEL is handled by the endpoint"
    );
    assert_eq!(
        s.endpoint(0).transactions() + s.endpoint(1).transactions(),
        0
    );
}

#[test]
fn cancel_without_invite_gets_481() {
    let (mut s, a, _) = sim(11, LinkConfig::default());
    let start = s.now;
    let cancel = request(Method::Invite, "x", Transport::Udp)
        .cancel(&[])
        .unwrap();
    s.endpoint(a)
        .send_request(start, cancel, Transport::Udp, addr(BOB))
        .unwrap();
    let mut log = Log::default();
    s.run_until(start + Duration::from_secs(1), &mut |node, _ep, now, ev| {
        log.note(node, now, start, &ev)
    });
    assert!(log.has(0, "response 481 CANCEL"), "{:#?}", log.0);
}

#[test]
fn malformed_request_is_answered_with_its_reason() {
    let mut ep = Endpoint::new(Config::default());
    let bad = b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;;branch=z9hG4bK1\r\n\
        From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:bob@192.0.2.2>\r\nCall-ID: m1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    ep.handle_datagram(
        Instant::now(),
        Received {
            transport: Transport::Udp,
            remote: addr(ALICE),
            bytes: Bytes::from_static(bad),
        },
    );
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.destination, addr(ALICE));
    assert!(
        t.bytes
            .starts_with(b"SIP/2.0 400 invalid Via header: empty parameter\r\n"),
        "{:?}",
        t.bytes
    );
    assert!(matches!(ep.poll_event(), Some(Event::Malformed { .. })));
    assert_eq!(ep.transactions(), 0);
}

#[test]
fn full_table_answers_503_with_retry_after() {
    let mut ep = Endpoint::new(Config {
        max_transactions: 1,
        ..Config::default()
    });
    let now = Instant::now();
    for (i, want_event) in [(1, true), (2, false)] {
        let req = request(Method::Options, &format!("full{i}"), Transport::Udp);
        ep.handle_datagram(
            now,
            Received {
                transport: Transport::Udp,
                remote: addr(ALICE),
                bytes: req.to_bytes(),
            },
        );
        assert_eq!(
            matches!(ep.poll_event(), Some(Event::Request { .. })),
            want_event
        );
    }
    let t = ep.poll_transmit().unwrap();
    let Message::Response(r) = Message::parse(&t.bytes).unwrap() else {
        panic!()
    };
    assert_eq!(r.status(), 503);
    assert!(r.typed::<sipua_message::header::RetryAfter>().is_some());
    assert_eq!(ep.transactions(), 1, "the table did not grow");
}

#[test]
fn a_full_table_drops_the_oldest_answered_transaction_for_a_new_request() {
    let mut ep = Endpoint::new(Config {
        max_transactions: 3,
        ..Config::default()
    });
    let t0 = Instant::now();
    // feeds a request at `at`; returns the status the endpoint itself answered, if any
    let feed = |ep: &mut Endpoint, at: Instant, branch: &str| {
        let req = request(Method::Options, branch, Transport::Udp);
        ep.handle_datagram(
            at,
            Received {
                transport: Transport::Udp,
                remote: addr(ALICE),
                bytes: req.to_bytes(),
            },
        );
        let mut answered_by_us = None;
        while let Some(ev) = ep.poll_event() {
            if let Event::Request { id, request, .. } = ev {
                ep.respond(at, id, Response::from_request(&request, 200))
                    .unwrap();
            }
        }
        while let Some(t) = ep.poll_transmit() {
            if let Ok(Message::Response(r)) = Message::parse(&t.bytes) {
                if r.status() != 200 {
                    answered_by_us = Some(r.status());
                }
            }
        }
        answered_by_us
    };
    // three answered requests linger (Timer J, 32 s over UDP)
    for i in 0..3 {
        let at = t0 + Duration::from_millis(100 * i);
        assert_eq!(feed(&mut ep, at, &format!("l{i}")), None);
    }
    assert_eq!(ep.transactions(), 3);
    // a second later none has lingered long enough to go: 503
    assert_eq!(
        feed(&mut ep, t0 + Duration::from_secs(1), "early"),
        Some(503)
    );
    // five seconds later the oldest makes room, and only it
    let later = t0 + Duration::from_secs(5);
    ep.handle_timeout(later);
    assert_eq!(feed(&mut ep, later, "new"), None, "served, not refused");
    assert_eq!(ep.transactions(), 3);
    // the second and third still absorb their retransmissions; the first is gone
    for (branch, kept) in [("l1", true), ("l2", true)] {
        let req = request(Method::Options, branch, Transport::Udp);
        ep.handle_datagram(
            later,
            Received {
                transport: Transport::Udp,
                remote: addr(ALICE),
                bytes: req.to_bytes(),
            },
        );
        assert_eq!(ep.poll_event().is_none(), kept, "{branch}");
        while ep.poll_transmit().is_some() {}
    }
}

#[test]
fn rport_and_received_route_the_response_back_to_the_source() {
    // Alice says sent-by 10.0.0.1 with rport, but arrives from a NAT at 198.51.100.7:40000
    let mut ep = Endpoint::new(Config::default());
    let now = Instant::now();
    let mut req = request(Method::Options, "nat", Transport::Udp);
    let mut via = Via::new(
        Transport::Udp,
        Host::Ipv4("10.0.0.1".parse().unwrap()),
        Some(5060),
        "z9hG4bKnat",
    );
    via.params.set("rport", None);
    req.set_top_via(&via).unwrap();
    let nat = addr("198.51.100.7:40000");
    ep.handle_datagram(
        now,
        Received {
            transport: Transport::Udp,
            remote: nat,
            bytes: req.to_bytes(),
        },
    );
    let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
        panic!()
    };
    ep.respond(now, id, Response::from_request(&request, 200))
        .unwrap();
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.destination, nat);
    let Message::Response(r) = Message::parse(&t.bytes).unwrap() else {
        panic!()
    };
    let v = r.top_via().unwrap();
    assert_eq!(
        v.received(),
        Some(Host::Ipv4("198.51.100.7".parse().unwrap()))
    );
    assert_eq!(v.rport(), Some(Some(40000)));
    assert_eq!(ep.state(id), Some(State::Completed));
}

#[test]
fn rfc_2543_requests_without_the_cookie_still_match_their_retransmissions() {
    let mut ep = Endpoint::new(Config::default());
    let now = Instant::now();
    let raw = Bytes::from_static(
        b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\nFrom: <sip:a@192.0.2.1>\r\n\
          To: <sip:bob@192.0.2.2>\r\nCall-ID: old-1\r\nCSeq: 7 OPTIONS\r\n\r\n",
    );
    let rx = || Received {
        transport: Transport::Udp,
        remote: addr(ALICE),
        bytes: raw.clone(),
    };
    ep.handle_datagram(now, rx());
    let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
        panic!()
    };
    ep.handle_datagram(now, rx());
    assert!(
        ep.poll_event().is_none(),
        "the retransmission matched by RFC 2543 rules"
    );
    ep.respond(now, id, Response::from_request(&request, 200))
        .unwrap();
    while ep.poll_transmit().is_some() {}
    ep.handle_datagram(now, rx());
    assert!(ep.poll_event().is_none());
    assert!(
        ep.poll_transmit()
            .is_some_and(|t| t.bytes.starts_with(b"SIP/2.0 200")),
        "the 200 is repeated"
    );
}

#[test]
fn a_held_back_100_trying_goes_out_only_when_the_tu_is_slow() {
    let cfg = Config {
        trying_delay: Duration::from_millis(200),
        ..Config::default()
    };
    let start = Instant::now();
    let invite = |branch: &str| Received {
        transport: Transport::Udp,
        remote: addr(ALICE),
        bytes: request(Method::Invite, branch, Transport::Udp).to_bytes(),
    };
    // the TU rings within 200 ms: no 100 at all
    let mut ep = Endpoint::new(cfg.clone());
    ep.handle_datagram(start, invite("fast"));
    assert!(ep.poll_transmit().is_none());
    let Some(Event::Request { id, request, .. }) = ep.poll_event() else {
        panic!()
    };
    let mut ringing = Response::from_request(&request, 180);
    ringing.set_to_tag("b1").unwrap();
    ep.respond(start, id, ringing).unwrap();
    // the 100's deadline is gone with it: nothing to wake for until the final response
    assert_eq!(ep.poll_timeout(), None);
    ep.handle_timeout(start + Duration::from_millis(200));
    let sent: Vec<u16> = std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| match Message::parse(&t.bytes).unwrap() {
            Message::Response(r) => r.status(),
            Message::Request(_) => 0,
        })
        .collect();
    assert_eq!(sent, vec![180]);

    // the TU is slow: the 100 leaves at 200 ms, and a retransmitted INVITE gets it again
    let mut ep = Endpoint::new(cfg);
    ep.handle_datagram(start, invite("slow"));
    assert!(ep.poll_transmit().is_none());
    assert_eq!(ep.poll_timeout(), Some(start + Duration::from_millis(200)));
    ep.handle_timeout(start + Duration::from_millis(200));
    let t = ep.poll_transmit().expect("the 100 Trying");
    let Message::Response(r) = Message::parse(&t.bytes).unwrap() else {
        panic!()
    };
    assert_eq!(r.status(), 100);
    assert_eq!(r.call_id(), "slow@alice");
    ep.handle_datagram(start + Duration::from_millis(500), invite("slow"));
    let again = ep.poll_transmit().expect("the 100 again");
    assert_eq!(again.bytes, t.bytes);
}
