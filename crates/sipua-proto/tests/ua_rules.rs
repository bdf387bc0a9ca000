//! What the UA core answers by itself (RFC 3261 §8.2, §11.2, §12.2.2).

use std::time::Instant;

use bytes::Bytes;
use sipua_message::{HeaderName, Message, Response, Transport};
use sipua_proto::endpoint::Received;
use sipua_proto::ua::{UaConfig, UaCore, UaEvent};

fn core() -> UaCore {
    UaCore::new(UaConfig::new(
        "192.0.2.2:5060".parse().unwrap(),
        Transport::Udp,
        "bob",
    ))
}

fn request(start: &str, extra: &str, branch: &str, body: &str) -> Bytes {
    let method = start.split(' ').next().unwrap();
    let cseq_method = if method.starts_with("sip") {
        "OPTIONS"
    } else {
        method
    };
    Bytes::from(format!(
        "{start} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@192.0.2.1>;tag=a1\r\nTo: <sip:bob@192.0.2.2>\r\nCall-ID: rules-1\r\nCSeq: 1 {cseq_method}\r\n\
         Contact: <sip:alice@192.0.2.1>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Feeds one request; returns the final response the core sent, if any, and the events.
fn feed(ua: &mut UaCore, bytes: Bytes) -> (Option<Response>, Vec<UaEvent>) {
    ua.handle_datagram(
        Instant::now(),
        Received {
            transport: Transport::Udp,
            remote: "192.0.2.1:5060".parse().unwrap(),
            bytes,
        },
    );
    let mut last = None;
    while let Some(t) = ua.poll_transmit() {
        if let Ok(Message::Response(r)) = Message::parse(&t.bytes) {
            if r.status() >= 200 {
                last = Some(r);
            }
        }
    }
    let mut events = Vec::new();
    while let Some(e) = ua.poll_event() {
        events.push(e);
    }
    (last, events)
}

fn answered(ua: &mut UaCore, bytes: Bytes) -> Response {
    let (r, events) = feed(ua, bytes);
    assert!(events.is_empty(), "the TU is not bothered: {events:?}");
    r.expect("a final response")
}

fn header(r: &Response, name: HeaderName) -> String {
    r.headers()
        .get(&name)
        .map(|h| h.unfolded())
        .unwrap_or_default()
}

#[test]
fn unknown_and_unallowed_methods() {
    let mut ua = core();
    let r = answered(
        &mut ua,
        request("NEWMETHOD sip:bob@192.0.2.2", "", "m1", ""),
    );
    assert_eq!(r.status(), 501);
    assert!(header(&r, HeaderName::Allow).contains("INVITE"));
    let r = answered(&mut ua, request("PUBLISH sip:bob@192.0.2.2", "", "m2", ""));
    assert_eq!(r.status(), 405);
    assert!(!header(&r, HeaderName::Allow).contains("PUBLISH"));
    assert!(r.to_tag().is_some(), "a final response carries a To tag");
}

#[test]
fn uri_scheme_body_type_and_extensions() {
    let mut ua = core();
    let r = answered(
        &mut ua,
        request(
            "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent",
            "",
            "u1",
            "",
        ),
    );
    assert_eq!(r.status(), 416);
    let r = answered(
        &mut ua,
        request(
            "INVITE sip:bob@192.0.2.2",
            "Content-Type: application/unknownformat\r\n",
            "u2",
            "xyz",
        ),
    );
    assert_eq!(r.status(), 415);
    assert!(header(&r, HeaderName::Accept).contains("application/sdp"));
    // §8.2.3: a body in an encoding we cannot undo gets 415 with what we take
    let r = answered(
        &mut ua,
        request(
            "INVITE sip:bob@192.0.2.2",
            "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n",
            "u2b",
            "xyz",
        ),
    );
    assert_eq!(r.status(), 415);
    assert_eq!(header(&r, HeaderName::AcceptEncoding), "identity");
    let r = answered(
        &mut ua,
        request(
            "INVITE sip:bob@192.0.2.2",
            "Require: nothingSupportsThis, 100rel\r\n",
            "u3",
            "",
        ),
    );
    assert_eq!(r.status(), 420);
    assert_eq!(header(&r, HeaderName::Unsupported), "nothingSupportsThis");
}

#[test]
fn options_is_answered_with_capabilities() {
    let mut ua = core();
    let r = answered(&mut ua, request("OPTIONS sip:bob@192.0.2.2", "", "o1", ""));
    assert_eq!(r.status(), 200);
    assert!(header(&r, HeaderName::Allow).contains("BYE"));
    assert!(header(&r, HeaderName::Supported).contains("replaces"));
    assert!(header(&r, HeaderName::Accept).contains("application/sdp"));
}

#[test]
fn max_forwards_zero() {
    let mut ua = core();
    let zero = |m: &str, b: &str| request(m, "", b, "").to_vec();
    let fix = |v: Vec<u8>| {
        Bytes::from(
            String::from_utf8(v)
                .unwrap()
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
        )
    };
    assert_eq!(
        answered(&mut ua, fix(zero("INVITE sip:bob@192.0.2.2", "z1"))).status(),
        483
    );
    assert_eq!(
        answered(&mut ua, fix(zero("OPTIONS sip:bob@192.0.2.2", "z2"))).status(),
        200
    );
}

#[test]
fn malformed_addresses_get_400() {
    let mut ua = core();
    let bytes = String::from_utf8(request("INVITE sip:bob@192.0.2.2", "", "b1", "").to_vec())
        .unwrap()
        .replace(
            "From: <sip:alice@192.0.2.1>",
            "From: <sip:al ice@192.0.2.1>",
        );
    assert_eq!(answered(&mut ua, Bytes::from(bytes)).status(), 400);
}

#[test]
fn merged_request_gets_482_and_unknown_dialog_481() {
    let mut ua = core();
    let (r, events) = feed(
        &mut ua,
        request("INVITE sip:bob@192.0.2.2", "", "first", ""),
    );
    assert!(r.is_none(), "the TU answers this one");
    assert!(matches!(
        events.as_slice(),
        [UaEvent::Request { dialog: None, .. }]
    ));
    // the same INVITE (From tag, Call-ID, CSeq) forked back to us along another path
    assert_eq!(
        answered(
            &mut ua,
            request("INVITE sip:bob@192.0.2.2", "", "second", "")
        )
        .status(),
        482
    );
    let bye = String::from_utf8(request("BYE sip:bob@192.0.2.2", "", "bye", "").to_vec())
        .unwrap()
        .replace(
            "To: <sip:bob@192.0.2.2>",
            "To: <sip:bob@192.0.2.2>;tag=nosuch",
        );
    assert_eq!(answered(&mut ua, Bytes::from(bye)).status(), 481);
}

/// Hands the core one datagram from 192.0.2.1 over UDP at `now`.
fn deliver(ua: &mut UaCore, now: Instant, bytes: Bytes) {
    ua.handle_datagram(
        now,
        Received {
            transport: Transport::Udp,
            remote: "192.0.2.1:5060".parse().unwrap(),
            bytes,
        },
    );
}

/// Feeds one request at `now` from 192.0.2.1; returns every response status the core sent
/// and the events.
fn feed_at(ua: &mut UaCore, now: Instant, bytes: Bytes) -> (Vec<String>, Vec<UaEvent>) {
    deliver(ua, now, bytes);
    let mut sent = Vec::new();
    while let Some(t) = ua.poll_transmit() {
        match Message::parse(&t.bytes) {
            Ok(Message::Response(r)) => sent.push(r.status().to_string()),
            Ok(Message::Request(r)) => sent.push(r.method().to_string()),
            Err(e) => panic!("{e}"),
        }
    }
    (sent, std::iter::from_fn(|| ua.poll_event()).collect())
}

/// An INVITE of Call-ID `call` over branch `branch`.
fn invite(call: &str, branch: &str) -> Bytes {
    let text = String::from_utf8(request("INVITE sip:bob@192.0.2.2", "", branch, "").to_vec());
    Bytes::from(text.unwrap().replace("rules-1", call))
}

#[test]
fn a_merged_request_gets_482_while_the_first_transaction_lingers() {
    // RFC 3261 §8.2.2.2: "ongoing transactions" include the first one after it was answered
    for status in [486, 200] {
        let mut ua = core();
        let t0 = Instant::now();
        let (_, events) = feed_at(&mut ua, t0, invite("m1", "first"));
        let Some(UaEvent::Request { id, .. }) = events.into_iter().next() else {
            panic!()
        };
        let r = ua.response(id, status).unwrap();
        ua.respond(t0, id, r).unwrap();
        while ua.poll_transmit().is_some() {}
        // a copy along another path, a second after the answer: 482, the TU never sees it
        let later = t0 + std::time::Duration::from_secs(1);
        let (mut sent, events) = feed_at(&mut ua, later, invite("m1", "second"));
        sent.retain(|s| s != "100");
        assert_eq!(sent, ["482"], "after {status}");
        assert!(!events.iter().any(|e| matches!(e, UaEvent::Request { .. })));
        // the first branch again is a retransmission, absorbed by its transaction
        let (sent, events) = feed_at(&mut ua, later, invite("m1", "first"));
        assert!(!sent.contains(&"482".to_string()), "{sent:?}");
        assert!(!events.iter().any(|e| matches!(e, UaEvent::Request { .. })));
    }
}

#[test]
fn unacknowledged_calls_past_the_limit_end_oldest_first() {
    let mut ua = UaCore::new(UaConfig {
        max_unconfirmed: 3,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    let mut dialogs: Vec<sipua_proto::dialog::DialogId> = Vec::new();
    for i in 0..6 {
        let now = t0 + std::time::Duration::from_millis(i * 10);
        let (sent, events) = feed_at(&mut ua, now, invite(&format!("u{i}"), &format!("b{i}")));
        let mut ended = Vec::new();
        let mut id = None;
        for e in events {
            match e {
                UaEvent::Request { id: t, .. } => id = Some(t),
                UaEvent::AckTimeout { dialog } => ended.push(dialog),
                e => panic!("{e:?}"),
            }
        }
        // the fourth INVITE on finds three calls waiting: the oldest one ends with a BYE
        if i >= 3 {
            assert_eq!(ended, [dialogs[(i - 3) as usize].clone()], "call {i}");
            assert!(sent.contains(&"BYE".to_string()), "{sent:?}");
        } else {
            assert!(ended.is_empty());
        }
        let id = id.expect("the new INVITE reaches the TU");
        let ok = ua.response(id, 200).unwrap();
        dialogs.push(ua.respond(now, id, ok).unwrap().unwrap());
        while ua.poll_transmit().is_some() {}
    }
    // a call that was acknowledged is never dropped: ACK the newest, then three more
    let ack = String::from_utf8(invite("u5", "ack5").to_vec()).unwrap();
    let tag = dialogs[5].local_tag.to_string();
    let ack = ack
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:bob@192.0.2.2>",
            &format!("To: <sip:bob@192.0.2.2>;tag={tag}"),
        );
    let (_, events) = feed_at(&mut ua, t0, Bytes::from(ack));
    assert!(
        matches!(events.as_slice(), [UaEvent::Ack { .. }]),
        "{events:?}"
    );
    for i in 6..9 {
        let (_, events) = feed_at(&mut ua, t0, invite(&format!("u{i}"), &format!("b{i}")));
        for e in &events {
            if let UaEvent::AckTimeout { dialog } = e {
                assert_ne!(*dialog, dialogs[5], "the confirmed call stays");
            }
        }
        let Some(UaEvent::Request { id, .. }) = events.into_iter().last() else {
            panic!()
        };
        let ok = ua.response(id, 200).unwrap();
        ua.respond(t0, id, ok).unwrap();
    }
}

#[test]
fn unacknowledged_calls_past_the_byte_budget_end_oldest_first() {
    // INVITEs with 6 KB of headers each, a budget of 20 KB: at most two or three wait
    let mut ua = UaCore::new(UaConfig {
        max_unconfirmed_bytes: 20_000,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let padding: String = (0..60)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(90)))
        .collect();
    let t0 = Instant::now();
    let mut ended = 0;
    for i in 0..20 {
        let text = String::from_utf8(invite(&format!("b{i}"), &format!("x{i}")).to_vec()).unwrap();
        let big = text.replace("Content-Length", &format!("{padding}Content-Length"));
        let (_, events) = feed_at(&mut ua, t0, Bytes::from(big));
        for e in events {
            match e {
                UaEvent::Request { id, .. } => {
                    let ok = ua.response(id, 200).unwrap();
                    ua.respond(t0, id, ok).unwrap();
                }
                UaEvent::AckTimeout { .. } => ended += 1,
                e => panic!("{e:?}"),
            }
        }
        while ua.poll_transmit().is_some() {}
    }
    assert!(ended >= 16, "{ended} calls dropped");
    assert!(
        ua.dialogs() <= 20 - ended,
        "the dropped calls' dialogs are gone"
    );
}

#[test]
fn full_dialog_table_answers_503() {
    let mut ua = UaCore::new(UaConfig {
        max_dialogs: 1,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let (_, events) = feed(&mut ua, request("INVITE sip:bob@192.0.2.2", "", "d1", ""));
    let Some(UaEvent::Request { id, .. }) = events.into_iter().next() else {
        panic!()
    };
    let ok = ua.response(id, 200).unwrap();
    ua.respond(Instant::now(), id, ok).unwrap();
    assert_eq!(ua.dialogs(), 1);
    let second = String::from_utf8(request("INVITE sip:bob@192.0.2.2", "", "d2", "").to_vec())
        .unwrap()
        .replace("rules-1", "rules-2");
    let r = answered(&mut ua, Bytes::from(second));
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains(&HeaderName::RetryAfter));
    assert_eq!(ua.dialogs(), 1);
}

#[test]
fn forked_2xx_make_two_dialogs_each_acked() {
    use sipua_message::{Method, Request};
    let mut alice = UaCore::new(UaConfig::new(
        "192.0.2.1:5060".parse().unwrap(),
        Transport::Udp,
        "alice",
    ));
    let now = Instant::now();
    let proxy: std::net::SocketAddr = "192.0.2.9:5060".parse().unwrap();
    alice
        .invite(now, "sip:bob@example.com".parse().unwrap(), proxy, None)
        .unwrap();
    let t = alice.poll_transmit().unwrap();
    let Ok(Message::Request(invite)) = Message::parse(&t.bytes) else {
        panic!()
    };
    let answer = |tag: &str, contact: &str| -> Bytes {
        let mut r = Response::from_request(&invite, 200);
        r.set_to_tag(tag).unwrap();
        r.push_header(sipua_message::Header::new(
            HeaderName::Contact,
            format!("<{contact}>"),
        ))
        .unwrap();
        r.to_bytes()
    };
    for (tag, contact) in [
        ("fork1", "sip:bob@192.0.2.21"),
        ("fork2", "sip:bob@192.0.2.22"),
    ] {
        alice.handle_datagram(
            now,
            Received {
                transport: Transport::Udp,
                remote: proxy,
                bytes: answer(tag, contact),
            },
        );
    }
    let mut dialogs = Vec::new();
    while let Some(ev) = alice.poll_event() {
        if let UaEvent::Response {
            response,
            dialog: Some(d),
            ..
        } = ev
        {
            assert_eq!(response.status(), 200);
            dialogs.push(d);
        }
    }
    assert_eq!(dialogs.len(), 2);
    assert_ne!(dialogs[0], dialogs[1]);
    assert_eq!(alice.dialogs(), 2);
    let acks: Vec<Request> = std::iter::from_fn(|| alice.poll_transmit())
        .filter_map(|t| match Message::parse(&t.bytes) {
            Ok(Message::Request(r)) if *r.method() == Method::Ack => Some(r),
            _ => None,
        })
        .collect();
    let targets: Vec<String> = acks.iter().map(|a| a.uri().to_string()).collect();
    assert_eq!(
        targets,
        vec!["sip:bob@192.0.2.21", "sip:bob@192.0.2.22"],
        "each dialog ACKed at its own target"
    );
    // a retransmission of the second 200 is re-ACKed without a new event
    alice.handle_datagram(
        now,
        Received {
            transport: Transport::Udp,
            remote: proxy,
            bytes: answer("fork2", "sip:bob@192.0.2.22"),
        },
    );
    assert!(alice.poll_event().is_none());
    let again = alice.poll_transmit().unwrap();
    assert!(again.bytes.starts_with(b"ACK sip:bob@192.0.2.22 "));
}

#[test]
fn request_for_another_user_gets_404() {
    let mut ua = core();
    assert_eq!(
        answered(
            &mut ua,
            request("MESSAGE sip:carol@192.0.2.2", "", "n1", "")
        )
        .status(),
        404
    );
    let (r, events) = feed(&mut ua, request("MESSAGE sip:bob@192.0.2.2", "", "n2", ""));
    assert!(
        r.is_none() && matches!(events.as_slice(), [UaEvent::Request { .. }]),
        "bob's own request goes up"
    );
}

#[test]
fn large_requests_switch_to_tcp() {
    use sipua_message::header::MediaType;
    let mut alice = UaCore::new(UaConfig::new(
        "192.0.2.1:5060".parse().unwrap(),
        Transport::Udp,
        "alice",
    ));
    let now = Instant::now();
    let big = Bytes::from(vec![b'a'; 2000]);
    alice
        .send_request(
            now,
            sipua_message::Method::Message,
            "sip:bob@192.0.2.2".parse().unwrap(),
            "192.0.2.2:5060".parse().unwrap(),
            Vec::new(),
            Some((MediaType::new("text", "plain"), big)),
        )
        .unwrap();
    let t = alice.poll_transmit().unwrap();
    assert_eq!(t.transport, Transport::Tcp);
    let Ok(Message::Request(r)) = Message::parse(&t.bytes) else {
        panic!()
    };
    assert_eq!(r.via_key().transport, &Transport::Tcp, "Via says so too");
    alice
        .send_request(
            now,
            sipua_message::Method::Message,
            "sip:bob@192.0.2.2".parse().unwrap(),
            "192.0.2.2:5060".parse().unwrap(),
            Vec::new(),
            Some((MediaType::new("text", "plain"), Bytes::from_static(b"hi"))),
        )
        .unwrap();
    assert_eq!(alice.poll_transmit().unwrap().transport, Transport::Udp);
}

#[test]
fn a_failed_send_ends_the_transaction_with_a_transport_error() {
    let mut alice = UaCore::new(UaConfig::new(
        "192.0.2.1:5060".parse().unwrap(),
        Transport::Tcp,
        "alice",
    ));
    let now = Instant::now();
    let id = alice
        .send_request(
            now,
            sipua_message::Method::Options,
            "sip:bob@192.0.2.2".parse().unwrap(),
            "192.0.2.2:5060".parse().unwrap(),
            Vec::new(),
            None,
        )
        .unwrap();
    let t = alice.poll_transmit().unwrap();
    let tx = t.transaction.expect("the transmit names its transaction");
    alice.handle_transport_error(now, tx);
    assert!(matches!(alice.poll_event(), Some(UaEvent::TransportError { id: e }) if e == id));
    assert_eq!(alice.transactions(), 0);
}

#[test]
fn an_ack_with_the_wrong_cseq_does_not_stop_the_2xx() {
    let mut ua = core();
    let (_, events) = feed(&mut ua, request("INVITE sip:bob@192.0.2.2", "", "w1", ""));
    let Some(UaEvent::Request { id, .. }) = events.into_iter().next() else {
        panic!()
    };
    let ok = ua.response(id, 200).unwrap();
    let tag = ok.to_tag().unwrap().to_owned();
    ua.respond(Instant::now(), id, ok).unwrap();
    while ua.poll_transmit().is_some() {}
    let ack = |cseq: u32| {
        Bytes::from(format!(
            "ACK sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack{cseq}\r\n\
             From: <sip:alice@192.0.2.1>;tag=a1\r\nTo: <sip:bob@192.0.2.2>;tag={tag}\r\nCall-ID: rules-1\r\n\
             CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    let (_, events) = feed(&mut ua, ack(2));
    assert!(
        events.is_empty(),
        "an ACK for CSeq 2 does not acknowledge the 200 to CSeq 1: {events:?}"
    );
    let (_, events) = feed(&mut ua, ack(1));
    assert!(
        matches!(events.as_slice(), [UaEvent::Ack { .. }]),
        "{events:?}"
    );
}

#[test]
fn core_errors_say_what_is_wrong_and_chain_their_source() {
    use sipua_proto::dialog::DialogError;
    use sipua_proto::ua::UaError;
    use std::error::Error as _;
    let parse = sipua_message::Message::parse(b"INVITE sip:a@b SIP/2.0\r\n\r\n").unwrap_err();
    let e = UaError::Dialog(DialogError::Message(parse.clone()));
    assert_eq!(e.to_string(), format!("dialog: malformed message: {parse}"));
    let dialog = e.source().expect("the dialog error");
    assert_eq!(dialog.to_string(), format!("malformed message: {parse}"));
    assert_eq!(dialog.source().unwrap().to_string(), parse.to_string());
    assert_eq!(
        UaError::RequestPending.to_string(),
        "a re-INVITE of ours in this dialog awaits its final response"
    );
}

/// How many 503s the core sent.
fn shed_of(sent: &[String]) -> usize {
    sent.iter().filter(|s| *s == "503").count()
}

#[test]
fn past_the_pending_limit_new_requests_get_503_and_calls_in_progress_go_on() {
    let mut ua = UaCore::new(UaConfig {
        max_pending_requests: 2,
        overload_retry_after: 7,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    // two INVITEs wait for the TU: both reach it
    let mut ids = Vec::new();
    for i in 0..2 {
        let (_, events) = feed_at(&mut ua, t0, invite(&format!("p{i}"), &format!("pb{i}")));
        match events.as_slice() {
            [UaEvent::Request { id, .. }] => ids.push(*id),
            e => panic!("{e:?}"),
        }
    }
    // the third, and an OPTIONS: 503 at once, the TU never hears of them
    let (sent, events) = feed_at(&mut ua, t0, invite("p2", "pb2"));
    assert_eq!(shed_of(&sent), 1, "{sent:?}");
    assert!(events.is_empty(), "{events:?}");
    let r = answered(
        &mut ua,
        request("OPTIONS sip:bob@192.0.2.2", "", "opt1", ""),
    );
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, HeaderName::RetryAfter), "7");
    assert_eq!(ua.shed(), 2);
    // the first call is answered: its ACK and its BYE are in a dialog, never shed
    let ok = ua.response(ids[0], 200).unwrap();
    let dialog = ua.respond(t0, ids[0], ok).unwrap().unwrap();
    while ua.poll_transmit().is_some() {}
    let tag = dialog.local_tag.to_string();
    let in_dialog = |method: &str, branch: &str| {
        let text = String::from_utf8(invite("p0", branch).to_vec()).unwrap();
        Bytes::from(
            text.replace("INVITE sip", &format!("{method} sip"))
                .replace("1 INVITE", &format!("2 {method}"))
                .replace(
                    "<sip:bob@192.0.2.2>",
                    &format!("<sip:bob@192.0.2.2>;tag={tag}"),
                ),
        )
    };
    let (sent, events) = feed_at(&mut ua, t0, in_dialog("BYE", "bye0"));
    assert_eq!(shed_of(&sent), 0, "{sent:?}");
    assert!(
        events.iter().any(|e| matches!(e, UaEvent::Request { .. })),
        "the BYE reaches the TU: {events:?}"
    );
}

#[test]
fn invites_past_their_rate_get_503_and_the_rate_comes_back() {
    let mut ua = UaCore::new(UaConfig {
        max_invites_per_second: 2,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    let mut outcome = |now: Instant, i: u32| {
        let (sent, events) = feed_at(&mut ua, now, invite(&format!("r{i}"), &format!("rb{i}")));
        match (shed_of(&sent), events.as_slice()) {
            (1, []) => "503",
            (0, [UaEvent::Request { .. }]) => "taken",
            other => panic!("{other:?}"),
        }
    };
    // a second's worth at once, then 503
    assert_eq!(
        [outcome(t0, 0), outcome(t0, 1), outcome(t0, 2)],
        ["taken", "taken", "503"]
    );
    // half a second later, one token more
    let later = t0 + std::time::Duration::from_millis(500);
    assert_eq!([outcome(later, 3), outcome(later, 4)], ["taken", "503"]);
}

/// A core that takes one INVITE a second (Retry-After 9), its token just taken by a call.
fn refusing_core() -> (UaCore, Instant) {
    let mut ua = UaCore::new(UaConfig {
        max_invites_per_second: 1,
        overload_retry_after: 9,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    let (_, events) = feed_at(&mut ua, t0, invite("first", "first"));
    assert!(matches!(events.as_slice(), [UaEvent::Request { .. }]));
    (ua, t0)
}

/// Feeds an INVITE the core must refuse: one datagram out, a 503 back to the sender.
fn refused(ua: &mut UaCore, now: Instant, bytes: Bytes) -> Response {
    deliver(ua, now, bytes);
    assert!(ua.poll_event().is_none(), "the TU never hears of it");
    let t = ua.poll_transmit().expect("a 503");
    assert!(ua.poll_transmit().is_none());
    assert_eq!(t.destination, "192.0.2.1:5060".parse().unwrap());
    match Message::parse(&t.bytes).unwrap() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("{r:?}"),
    }
}

/// The ACK of a non-2xx final response with To tag `tag` to `invite` (same branch).
fn ack_of(invite: &Bytes, tag: &str) -> Bytes {
    let text = String::from_utf8(invite.to_vec()).unwrap();
    Bytes::from(
        text.replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "<sip:bob@192.0.2.2>",
                &format!("<sip:bob@192.0.2.2>;tag={tag}"),
            ),
    )
}

#[test]
fn a_refused_invite_leaves_no_transaction_and_its_503_is_the_same_each_time() {
    // the refusal is taken before the transaction layer (RFC 3261 §8.2.7): nothing is kept
    // for it, a retransmission gets the same response (same To tag), and the ACK of the 503
    // reaches no one
    let (mut ua, t0) = refusing_core();
    let before = ua.transactions();
    let refuse = |ua: &mut UaCore| refused(ua, t0, invite("s1", "sb1"));
    let first = refuse(&mut ua);
    assert_eq!(first.status(), 503);
    assert_eq!(header(&first, HeaderName::RetryAfter), "9");
    let tag = first.to().unwrap().tag().expect("a To tag").to_owned();
    assert_eq!(
        ua.transactions(),
        before,
        "no transaction for the refused INVITE"
    );
    // the INVITE again (its 503 was lost): the same answer
    let again = refuse(&mut ua);
    assert_eq!(again.to().unwrap().tag(), Some(tag.as_str()));
    // its ACK: nothing sent, nothing told
    let (sent, events) = feed_at(&mut ua, t0, ack_of(&invite("s1", "sb1"), &tag));
    assert!(sent.is_empty() && events.is_empty(), "{sent:?} {events:?}");
    assert_eq!(ua.transactions(), before);
    assert_eq!(ua.shed(), 2);
}

#[test]
fn a_refusal_taken_from_the_raw_datagram_says_what_the_parsed_one_says() {
    // a plain INVITE is refused before the parser; the same INVITE asking for rport takes the
    // parser's path (its Via gets rport=): the two 503s say the same, and both ACKs vanish
    let (mut ua, t0) = refusing_core();
    let before = ua.transactions();
    let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
    let plain = invite("x1", "xb1");
    let rport = Bytes::from(text(plain.clone()).replace(";branch=", ";rport;branch="));
    let raw = refused(&mut ua, t0, plain.clone());
    let parsed = refused(&mut ua, t0, rport.clone());
    assert_eq!(
        header(&raw, HeaderName::Via),
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKxb1"
    );
    assert_eq!(
        header(&parsed, HeaderName::Via),
        "SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bKxb1;received=192.0.2.1"
    );
    for r in [&raw, &parsed] {
        assert_eq!(
            (r.status(), r.reason().as_ref()),
            (503, "Service Unavailable")
        );
        assert_eq!(r.call_id(), "x1");
        assert_eq!(r.cseq(), parsed.cseq());
        assert_eq!(r.from_tag(), Some("a1"));
        assert_eq!(r.to().unwrap().uri, parsed.to().unwrap().uri);
        assert_eq!(header(r, HeaderName::RetryAfter), "9");
    }
    let tag = raw.to_tag().expect("a tag").to_owned();
    assert_eq!(parsed.to_tag(), Some(tag.as_str()));
    // the ACK of either: nothing sent, nothing told, nothing kept
    for invite in [plain, rport] {
        let (sent, events) = feed_at(&mut ua, t0, ack_of(&invite, &tag));
        assert!(sent.is_empty() && events.is_empty(), "{sent:?} {events:?}");
    }
    assert_eq!(ua.transactions(), before);
    assert_eq!(ua.shed(), 2);
    // the raw refusal reads only the lines it copies: while refusing, an INVITE whose
    // Request-URI the parser would answer 400 gets the 503 (and once not refusing, the 400)
    let bad_uri =
        Bytes::from(text(invite("x2", "xb2")).replace("INVITE sip:bob@192.0.2.2", "INVITE ::"));
    assert_eq!(feed_at(&mut ua, t0, bad_uri.clone()).0, ["503"]);
    let later = t0 + std::time::Duration::from_secs(2);
    assert_eq!(feed_at(&mut ua, later, bad_uri).0, ["400"]);
}

#[test]
fn invites_are_refused_while_the_reading_is_behind_and_taken_once_it_catches_up() {
    use std::time::Duration;
    let mut ua = UaCore::new(UaConfig {
        max_queue_delay: Duration::from_millis(100),
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let outcome = |ua: &mut UaCore, at: Instant, i: u32| {
        let (sent, events) = feed_at(ua, at, invite(&format!("q{i}"), &format!("qb{i}")));
        match (shed_of(&sent), events.as_slice()) {
            (1, []) => "503",
            (0, [UaEvent::Request { .. }]) => "taken",
            other => panic!("{other:?}"),
        }
    };
    // nothing said yet: taken
    assert_eq!(outcome(&mut ua, t0, 0), "taken");
    // datagrams waiting since t0: taken while that is under 100 ms, refused past it
    ua.set_backlog(Some(t0));
    assert_eq!(outcome(&mut ua, ms(90), 1), "taken");
    assert_eq!(outcome(&mut ua, ms(150), 2), "503");
    assert_eq!(outcome(&mut ua, ms(400), 3), "503");
    // the socket ran dry at 410 ms: what came after has waited a few ms
    ua.set_backlog(Some(ms(410)));
    assert_eq!(outcome(&mut ua, ms(420), 4), "taken");
    assert_eq!(ua.shed(), 2);
}

#[test]
fn a_draining_core_answers_new_requests_503_but_not_its_dialogs() {
    let mut ua = core();
    let t0 = Instant::now();
    let (_, events) = feed_at(&mut ua, t0, invite("d0", "db0"));
    let Some(UaEvent::Request { id, .. }) = events.into_iter().next() else {
        panic!()
    };
    let ok = ua.response(id, 200).unwrap();
    let dialog = ua.respond(t0, id, ok).unwrap().unwrap();
    while ua.poll_transmit().is_some() {}
    ua.set_draining(true);
    // OPTIONS (a dispatcher's probe) and a new INVITE: 503
    let r = answered(
        &mut ua,
        request("OPTIONS sip:bob@192.0.2.2", "", "dopt", ""),
    );
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, HeaderName::RetryAfter), "5");
    let (sent, events) = feed_at(&mut ua, t0, invite("d1", "db1"));
    assert_eq!(shed_of(&sent), 1, "{sent:?}");
    assert!(events.is_empty());
    // the call here goes on: its BYE reaches the TU
    let tag = dialog.local_tag.to_string();
    let text = String::from_utf8(invite("d0", "dbye").to_vec()).unwrap();
    let bye = text
        .replace("INVITE sip", "BYE sip")
        .replace("1 INVITE", "2 BYE")
        .replace(
            "<sip:bob@192.0.2.2>",
            &format!("<sip:bob@192.0.2.2>;tag={tag}"),
        );
    let (sent, events) = feed_at(&mut ua, t0, Bytes::from(bye));
    assert_eq!(shed_of(&sent), 0, "{sent:?}");
    assert!(events.iter().any(|e| matches!(e, UaEvent::Request { .. })));
    // and draining ends: OPTIONS is answered 200 again
    ua.set_draining(false);
    let r = answered(
        &mut ua,
        request("OPTIONS sip:bob@192.0.2.2", "", "dopt2", ""),
    );
    assert_eq!(r.status(), 200);
}

/// The Call-ID of a new OPTIONS that `ua` sends.
fn new_call_id(ua: &mut UaCore, now: Instant) -> String {
    ua.send_request(
        now,
        sipua_message::Method::Options,
        "sip:b@192.0.2.2".parse().unwrap(),
        "192.0.2.2:5060".parse().unwrap(),
        Vec::new(),
        None,
    )
    .unwrap();
    let t = ua.poll_transmit().unwrap();
    let Ok(Message::Request(r)) = Message::parse(&t.bytes) else {
        panic!()
    };
    r.call_id().to_owned()
}

#[test]
fn a_shard_makes_call_ids_that_hash_back_to_it() {
    use sipua_proto::hash::shard_of;
    let now = Instant::now();
    for (index, count) in [(0, 2), (1, 2), (3, 4), (6, 7)] {
        let mut ua = UaCore::new(UaConfig {
            shard: Some((index, count)),
            seed: index as u64,
            ..UaConfig::new("192.0.2.1:5060".parse().unwrap(), Transport::Udp, "a")
        });
        for _ in 0..50 {
            assert_eq!(shard_of(new_call_id(&mut ua, now).as_bytes(), count), index);
        }
    }
    // without shards, Call-IDs spread over any number of them (what a peer's do)
    let mut ua = core();
    let mut seen = [0usize; 4];
    for _ in 0..200 {
        seen[shard_of(new_call_id(&mut ua, now).as_bytes(), 4)] += 1;
    }
    assert!(seen.iter().all(|&n| n > 20), "{seen:?}");
}

/// The top Via of a message sent by the core.
fn top_via(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find_map(|l| l.strip_prefix("Via: "))
        .unwrap()
        .to_owned()
}

/// Feeds an INVITE the core takes: its transaction and the top Via of its 100 Trying.
fn taken(
    ua: &mut UaCore,
    now: Instant,
    bytes: Bytes,
) -> (sipua_proto::endpoint::TransactionId, String) {
    deliver(ua, now, bytes);
    let Some(UaEvent::Request { id, .. }) = ua.poll_event() else {
        panic!("not taken")
    };
    (id, top_via(&ua.poll_transmit().expect("100 Trying").bytes))
}

/// An INVITE whose Via asks for RFC 7339 overload control, as a proxy's would.
fn oc_invite(call: &str, branch: &str) -> Bytes {
    let text = String::from_utf8(invite(call, branch).to_vec()).unwrap();
    Bytes::from(text.replace(
        &format!(";branch=z9hG4bK{branch}"),
        &format!(";branch=z9hG4bK{branch};oc;oc-algo=\"loss,A\""),
    ))
}

#[test]
fn overload_figures_reach_the_clients_that_ask_in_the_via_of_every_answer() {
    // RFC 7339: one INVITE a second taken; the share refused becomes the cut
    let mut ua = UaCore::new(UaConfig {
        max_invites_per_second: 1,
        overload_via: true,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let t0 = Instant::now();
    let via = |call: &str| format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{call}");
    // not overloaded: oc=0, and a validity of 0 says no cut is asked for (§5.1)
    let (id, trying) = taken(&mut ua, t0, oc_invite("oc0", "oc0"));
    let calm = format!(
        "{};oc=0;oc-algo=\"loss\";oc-validity=0;oc-seq=0.000",
        via("oc0")
    );
    assert_eq!(trying, calm);
    // three more this second: refused, their 503s through the parser (the raw path would
    // not write the figures) and still saying 0, for the second is not over
    for i in 1..4 {
        let call = format!("oc{i}");
        let r = refused(&mut ua, t0, oc_invite(&call, &call));
        assert_eq!(r.status(), 503);
        assert_eq!(
            header(&r, HeaderName::Via),
            calm.replace("oc0", &call),
            "{i}"
        );
    }
    // a second later: 3 of 4 were refused, cut 75 % for a second (oc-seq: later figures)
    let later = t0 + std::time::Duration::from_secs(1);
    let (id4, trying) = taken(&mut ua, later, oc_invite("oc4", "oc4"));
    let cut = format!(
        "{};oc=75;oc-algo=\"loss\";oc-validity=1000;oc-seq=1.000",
        via("oc4")
    );
    assert_eq!(trying, cut);
    // the TU's answers carry what was told when the request came
    let r = ua.response(id4, 486).unwrap();
    ua.respond(later, id4, r).unwrap();
    let t = ua.poll_transmit().expect("486");
    assert_eq!(top_via(&t.bytes), cut);
    let r = ua.response(id, 180).unwrap();
    ua.respond(later, id, r).unwrap();
    let t = ua.poll_transmit().expect("180");
    assert_eq!(top_via(&t.bytes), calm);
    while ua.poll_transmit().is_some() {}
    // a client that does not ask gets no figures
    let r = refused(&mut ua, later, invite("plain", "plain"));
    assert_eq!(header(&r, HeaderName::Via), via("plain"));
    // a Via that offers other algorithms only is not answered with loss figures
    let other = String::from_utf8(oc_invite("rate", "rate").to_vec())
        .unwrap()
        .replace("\"loss,A\"", "\"rate\"");
    let r = refused(&mut ua, later, Bytes::from(other));
    assert_eq!(
        header(&r, HeaderName::Via),
        format!("{};oc;oc-algo=\"rate\"", via("rate"))
    );
}
