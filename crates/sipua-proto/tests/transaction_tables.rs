//! Every response class in every state of the client machines, and every TU response in every
//! state of the server machines (the table of SIP.js's transactions.spec, and more).

use std::time::Instant;

use bytes::Bytes;
use sipua_message::{Message, Request, Response};
use sipua_proto::transaction::{
    ClientInvite, ClientNonInvite, Delivery, Output, Reliability, ServerInvite, ServerNonInvite,
    State, TimerConfig,
};

const CLASSES: [&[u16]; 6] = [
    &[100, 180, 183],
    &[200, 202],
    &[300, 301],
    &[404, 480],
    &[500, 503],
    &[603, 699],
];

fn request(method: &str) -> Request {
    let raw = format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKt\r\n\
         From: <sip:alice@192.0.2.1>;tag=1\r\nTo: <sip:bob@192.0.2.2>\r\nCall-ID: tables\r\nCSeq: 1 {method}\r\n\r\n"
    );
    match Message::parse(raw.as_bytes()).unwrap() {
        Message::Request(r) => r,
        _ => unreachable!(),
    }
}

fn response(req: &Request, status: u16) -> Response {
    let mut r = Response::from_request(req, status);
    r.set_to_tag("t").unwrap();
    r
}

/// Drives a fresh ICT into `state` (Calling, Proceeding, Completed or Accepted).
fn ict_in(state: State, now: Instant, out: &mut Vec<Output>) -> ClientInvite {
    let inv = request("INVITE");
    let mut t = ClientInvite::new(
        now,
        inv.clone(),
        Reliability::Unreliable,
        TimerConfig::default(),
        out,
    );
    match state {
        State::Proceeding => {
            t.on_response(now, &response(&inv, 180), out);
        }
        State::Completed => {
            t.on_response(now, &response(&inv, 486), out);
        }
        State::Accepted => {
            t.on_response(now, &response(&inv, 200), out);
        }
        _ => {}
    }
    assert_eq!(t.state(), state);
    t
}

#[test]
fn ict_every_class_in_every_state() {
    let now = Instant::now();
    let inv = request("INVITE");
    for state in [
        State::Calling,
        State::Proceeding,
        State::Completed,
        State::Accepted,
    ] {
        for class in CLASSES {
            for &status in class {
                let mut out = Vec::new();
                let mut t = ict_in(state, now, &mut out);
                let sent_before = out.len();
                let d = t.on_response(now, &response(&inv, status), &mut out);
                let acks = out[sent_before..]
                    .iter()
                    .filter(|o| matches!(o, Output::Transmit(b) if b.starts_with(b"ACK")))
                    .count();
                let (want_state, want_delivery, want_acks) = match (state, status) {
                    (State::Calling | State::Proceeding, 100..=199) => {
                        (State::Proceeding, Delivery::Pass, 0)
                    }
                    (State::Calling | State::Proceeding, 200..=299) => {
                        (State::Accepted, Delivery::Pass, 0)
                    }
                    (State::Calling | State::Proceeding, _) => {
                        (State::Completed, Delivery::Pass, 1)
                    }
                    // a retransmitted non-2xx is ACKed again and absorbed
                    (State::Completed, 300..) => (State::Completed, Delivery::Absorb, 1),
                    (State::Completed, _) => (State::Completed, Delivery::Absorb, 0),
                    (State::Accepted, 200..=299) => (State::Accepted, Delivery::Pass, 0),
                    (State::Accepted, _) => (State::Accepted, Delivery::Absorb, 0),
                    _ => unreachable!(),
                };
                assert_eq!(
                    (t.state(), d, acks),
                    (want_state, want_delivery, want_acks),
                    "{state:?} + {status}"
                );
            }
        }
    }
}

#[test]
fn nict_every_class_in_every_state() {
    let now = Instant::now();
    for state in [State::Trying, State::Proceeding, State::Completed] {
        for class in CLASSES {
            for &status in class {
                let mut out = Vec::new();
                let mut t = ClientNonInvite::new(
                    now,
                    Bytes::from_static(b"BYE"),
                    Reliability::Unreliable,
                    TimerConfig::default(),
                    &mut out,
                );
                match state {
                    State::Proceeding => {
                        let _ = t.on_response(now, 180);
                    }
                    State::Completed => {
                        let _ = t.on_response(now, 200);
                    }
                    _ => {}
                }
                let d = t.on_response(now, status);
                let want = match (state, status) {
                    (State::Completed, _) => (State::Completed, Delivery::Absorb),
                    (_, 100..=199) => (State::Proceeding, Delivery::Pass),
                    (_, _) => (State::Completed, Delivery::Pass),
                };
                assert_eq!((t.state(), d), want, "{state:?} + {status}");
            }
        }
    }
}

#[test]
fn ist_every_tu_response_in_every_state() {
    let now = Instant::now();
    for state in [
        State::Proceeding,
        State::Completed,
        State::Accepted,
        State::Confirmed,
    ] {
        for class in CLASSES {
            for &status in class {
                let mut out = Vec::new();
                let mut t = ServerInvite::new(
                    Reliability::Unreliable,
                    TimerConfig::default(),
                    None,
                    &mut out,
                );
                match state {
                    State::Completed => {
                        let _ = t.respond(now, 486, Bytes::from_static(b"486"), &mut out);
                    }
                    State::Accepted => {
                        let _ = t.respond(now, 200, Bytes::from_static(b"200"), &mut out);
                    }
                    State::Confirmed => {
                        t.respond(now, 486, Bytes::from_static(b"486"), &mut out);
                        t.on_ack(now);
                    }
                    _ => {}
                }
                assert_eq!(t.state(), state);
                let sent = t.respond(now, status, Bytes::from_static(b"x"), &mut out);
                let want = match (state, status) {
                    (State::Proceeding, 100..=199) => (true, State::Proceeding),
                    (State::Proceeding, 200..=299) => (true, State::Accepted),
                    (State::Proceeding, _) => (true, State::Completed),
                    (State::Accepted, 200..=299) => (true, State::Accepted),
                    (s, _) => (false, s),
                };
                assert_eq!((sent, t.state()), want, "{state:?} + TU {status}");
            }
        }
    }
}

#[test]
fn nist_every_tu_response_in_every_state() {
    let now = Instant::now();
    for state in [State::Trying, State::Proceeding, State::Completed] {
        for class in CLASSES {
            for &status in class {
                let mut out = Vec::new();
                let mut t = ServerNonInvite::new(Reliability::Unreliable, TimerConfig::default());
                match state {
                    State::Proceeding => {
                        let _ = t.respond(now, 180, Bytes::from_static(b"180"), &mut out);
                    }
                    State::Completed => {
                        let _ = t.respond(now, 200, Bytes::from_static(b"200"), &mut out);
                    }
                    _ => {}
                }
                let sent = t.respond(now, status, Bytes::from_static(b"x"), &mut out);
                let want = match (state, status) {
                    (State::Completed, _) => (false, State::Completed),
                    (_, 100..=199) => (true, State::Proceeding),
                    (_, _) => (true, State::Completed),
                };
                assert_eq!((sent, t.state()), want, "{state:?} + TU {status}");
            }
        }
    }
}

#[test]
fn transport_errors_in_every_state_end_the_transaction() {
    let now = Instant::now();
    for state in [
        State::Calling,
        State::Proceeding,
        State::Completed,
        State::Accepted,
    ] {
        let mut out = Vec::new();
        let mut t = ict_in(state, now, &mut out);
        out.clear();
        t.on_transport_error(&mut out);
        assert_eq!(t.state(), State::Terminated);
        assert_eq!(
            out.contains(&Output::TransportError),
            matches!(state, State::Calling | State::Proceeding),
            "{state:?}"
        );
        assert_eq!(t.next_deadline(), None);
    }
}
