//! Routing through record-routing proxies and over the peer's own connection, in the UA
//! core: Record-Route copied into dialog-creating responses (RFC 3261 §12.1.1), route sets
//! for both sides and requests that follow them (§12.2.1.1, loose and strict routing, the
//! ACK of a 2xx, §13.2.2.4), the route set taken from the 2xx that confirms an early dialog
//! and frozen afterwards, and in-dialog requests to a WebSocket or outbound client sent over
//! the connection it came in on (RFC 7118 §5, RFC 5626).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sipua_message::{Message, Method, Request, Response, Transport};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::{Received, Transmit};
use sipua_proto::ua::{UaConfig, UaCore, UaEvent};

const PROXY: &str = "192.0.2.10:5070";
const ALICE: &str = "192.0.2.1:5060";

fn core(addr: &str, user: &str, transport: Transport) -> UaCore {
    UaCore::new(UaConfig::new(addr.parse().unwrap(), transport, user))
}

fn feed(ua: &mut UaCore, from: &str, transport: Transport, text: String) -> Vec<UaEvent> {
    ua.handle_datagram(
        Instant::now(),
        Received {
            transport,
            remote: from.parse().unwrap(),
            bytes: Bytes::from(text),
        },
    );
    let mut events = Vec::new();
    while let Some(e) = ua.poll_event() {
        events.push(e);
    }
    events
}

fn sent(ua: &mut UaCore) -> Vec<Transmit> {
    std::iter::from_fn(|| ua.poll_transmit()).collect()
}

fn request_of(t: &Transmit) -> Request {
    match Message::parse(&t.bytes).unwrap() {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status()),
    }
}

fn response_of(t: &Transmit) -> Response {
    match Message::parse(&t.bytes).unwrap() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method()),
    }
}

/// Every value of header `name`, as written, line by line.
fn lines(bytes: &[u8], name: &str) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
        .collect()
}

/// Three Record-Route lines as a proxy chain might write them: two values in one line, an
/// unknown parameter and odd spacing.
const RR: &str = "Record-Route: <sip:192.0.2.10:5070;lr;ftag=a1;x-unknown=q%20v>;x-hdr,  <sip:p2.example.com;lr>\r\n\
                  Record-Route: <sip:192.0.2.11;transport=tcp;lr>\r\n";

fn invite(method: &str, to_tag: &str, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP {PROXY};branch=z9hG4bKp{branch}\r\n\
         Via: SIP/2.0/UDP {ALICE};branch=z9hG4bKa{branch}\r\nMax-Forwards: 69\r\n{extra}\
         From: <sip:alice@192.0.2.1>;tag=a1\r\nTo: <sip:bob@192.0.2.2>{to_tag}\r\nCall-ID: route-1\r\n\
         CSeq: 1 {method}\r\nContact: <sip:alice@{ALICE}>\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n"
    )
}

fn incoming_id(events: &[UaEvent]) -> sipua_proto::endpoint::TransactionId {
    match events {
        [UaEvent::Request { id, .. }] => *id,
        other => panic!("expected one request, got {other:?}"),
    }
}

#[test]
fn uas_copies_every_record_route_in_order_into_1xx_and_2xx_only() {
    let mut bob = core("192.0.2.2:5060", "bob", Transport::Udp);
    let id = incoming_id(&feed(
        &mut bob,
        PROXY,
        Transport::Udp,
        invite("INVITE", "", "1", RR),
    ));
    let want = vec![
        "<sip:192.0.2.10:5070;lr;ftag=a1;x-unknown=q%20v>;x-hdr,  <sip:p2.example.com;lr>"
            .to_owned(),
        "<sip:192.0.2.11;transport=tcp;lr>".to_owned(),
    ];
    for (status, copies) in [(100, false), (180, true), (183, true), (200, true)] {
        let r = bob.response(id, status).unwrap();
        assert_eq!(
            lines(&r.to_bytes(), "Record-Route"),
            if copies { want.clone() } else { vec![] },
            "{status}"
        );
        bob.respond(Instant::now(), id, r).unwrap();
    }
    // the wire copy too
    let two_hundred = sent(&mut bob)
        .iter()
        .map(response_of)
        .find(|r| r.status() == 200)
        .unwrap();
    assert_eq!(lines(&two_hundred.to_bytes(), "Record-Route"), want);

    // a refused INVITE, a MESSAGE and a request inside a dialog create no dialog: no copy
    let mut carol = core("192.0.2.2:5060", "bob", Transport::Udp);
    let id = incoming_id(&feed(
        &mut carol,
        PROXY,
        Transport::Udp,
        invite("INVITE", "", "2", RR),
    ));
    let busy = carol.response(id, 486).unwrap();
    assert!(lines(&busy.to_bytes(), "Record-Route").is_empty());
    let id = incoming_id(&feed(
        &mut carol,
        PROXY,
        Transport::Udp,
        invite("MESSAGE", "", "3", RR),
    ));
    let ok = carol.response(id, 200).unwrap();
    assert!(lines(&ok.to_bytes(), "Record-Route").is_empty());
}

#[test]
fn subscribe_2xx_carries_the_record_route() {
    let mut bob = core("192.0.2.2:5060", "bob", Transport::Udp);
    let id = incoming_id(&feed(
        &mut bob,
        PROXY,
        Transport::Udp,
        invite("SUBSCRIBE", "", "4", RR),
    ));
    let ok = bob.response(id, 200).unwrap();
    assert_eq!(lines(&ok.to_bytes(), "Record-Route").len(), 2);
}

/// Bob answers a record-routed INVITE; returns his core and the dialog.
fn answered_call(rr: &str) -> (UaCore, DialogId) {
    let mut bob = core("192.0.2.2:5060", "bob", Transport::Udp);
    let id = incoming_id(&feed(
        &mut bob,
        PROXY,
        Transport::Udp,
        invite("INVITE", "", "5", rr),
    ));
    let ok = bob.response(id, 200).unwrap();
    let dialog = bob.respond(Instant::now(), id, ok).unwrap().unwrap();
    sent(&mut bob);
    (bob, dialog)
}

#[test]
fn uas_requests_follow_the_record_route_in_order() {
    let (mut bob, dialog) = answered_call(RR);
    let d = bob.dialog(&dialog).unwrap();
    let routes: Vec<String> = d.route_set().iter().map(|r| r.uri.to_string()).collect();
    assert_eq!(
        routes,
        [
            "sip:192.0.2.10:5070;lr;ftag=a1;x-unknown=q%20v",
            "sip:p2.example.com;lr",
            "sip:192.0.2.11;transport=tcp;lr"
        ]
    );
    let dest = bob.dialog_destination(&dialog).unwrap();
    assert_eq!(
        dest,
        PROXY.parse::<SocketAddr>().unwrap(),
        "the first route"
    );
    bob.request_in_dialog(Instant::now(), &dialog, Method::Bye, dest)
        .unwrap();
    let out = sent(&mut bob);
    let bye = request_of(&out[0]);
    assert_eq!(out[0].destination, dest);
    assert_eq!(bye.uri().to_string(), format!("sip:alice@{ALICE}"));
    let route = lines(&bye.to_bytes(), "Route");
    // every value as it came, parameters and all (RFC 3261 §12.2.1.1)
    assert_eq!(
        route,
        [
            "<sip:192.0.2.10:5070;lr;ftag=a1;x-unknown=q%20v>;x-hdr",
            "<sip:p2.example.com;lr>",
            "<sip:192.0.2.11;transport=tcp;lr>"
        ]
    );
}

#[test]
fn strict_router_first_in_the_route_set_becomes_the_request_uri() {
    let (mut bob, dialog) = answered_call("Record-Route: <sip:192.0.2.10:5070>\r\n");
    let dest = bob.dialog_destination(&dialog).unwrap();
    assert_eq!(dest, PROXY.parse::<SocketAddr>().unwrap());
    bob.request_in_dialog(Instant::now(), &dialog, Method::Bye, dest)
        .unwrap();
    let bye = request_of(&sent(&mut bob)[0]);
    assert_eq!(bye.uri().to_string(), "sip:192.0.2.10:5070");
    assert_eq!(
        lines(&bye.to_bytes(), "Route"),
        [format!("<sip:alice@{ALICE}>")]
    );
}

/// Alice's INVITE to Bob through the proxy; returns her core and the INVITE as sent.
fn calling() -> (UaCore, Request) {
    let mut alice = core(ALICE, "alice", Transport::Udp);
    alice
        .invite(
            Instant::now(),
            "sip:bob@example.com".parse().unwrap(),
            PROXY.parse().unwrap(),
            None,
        )
        .unwrap();
    let out = sent(&mut alice);
    (alice, request_of(&out[0]))
}

/// A response of Bob's (behind two proxies) to Alice's `invite`.
fn bobs_response(invite: &Request, status: u16, rr: &str, contact: &str, seq: u32) -> String {
    let text = String::from_utf8_lossy(&invite.to_bytes()).into_owned();
    let via = lines(invite.to_bytes().as_ref(), "Via").remove(0);
    let from = lines(text.as_bytes(), "From").remove(0);
    format!(
        "SIP/2.0 {status} X\r\nVia: {via}\r\n{rr}From: {from}\r\nTo: <sip:bob@example.com>;tag=b1\r\n\
         Call-ID: {}\r\nCSeq: {seq} INVITE\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n",
        invite.call_id()
    )
}

#[test]
fn uac_route_set_is_the_2xx_record_route_reversed_and_then_frozen() {
    let (mut alice, invite) = calling();
    // the 180 of an early dialog names one route set...
    let ev = feed(
        &mut alice,
        PROXY,
        Transport::Udp,
        bobs_response(
            &invite,
            180,
            "Record-Route: <sip:192.0.2.99;lr>\r\n",
            "sip:bob@192.0.2.2",
            1,
        ),
    );
    assert!(matches!(ev.as_slice(), [UaEvent::Response { .. }]));
    // ...the 2xx that confirms it another: the 2xx's counts (RFC 3261 §13.2.2.4)
    let rr = "Record-Route: <sip:192.0.2.11;lr>\r\nRecord-Route: <sip:192.0.2.10:5070;lr;x=1>\r\n";
    let ev = feed(
        &mut alice,
        PROXY,
        Transport::Udp,
        bobs_response(&invite, 200, rr, "sip:bob@192.0.2.2", 1),
    );
    let dialog = match ev.as_slice() {
        [UaEvent::Response {
            dialog: Some(d), ..
        }] => d.clone(),
        other => panic!("{other:?}"),
    };
    let routes = |a: &UaCore| -> Vec<String> {
        a.dialog(&dialog)
            .unwrap()
            .route_set()
            .iter()
            .map(|r| r.uri.to_string())
            .collect()
    };
    assert_eq!(
        routes(&alice),
        ["sip:192.0.2.10:5070;lr;x=1", "sip:192.0.2.11;lr"]
    );
    // the core's ACK of the 2xx follows the route set to the first route
    let out = sent(&mut alice);
    let ack = out
        .iter()
        .find(|t| request_of(t).method() == &Method::Ack)
        .unwrap();
    assert_eq!(ack.destination, PROXY.parse::<SocketAddr>().unwrap());
    let ack_req = request_of(ack);
    assert_eq!(ack_req.uri().to_string(), "sip:bob@192.0.2.2");
    assert_eq!(
        lines(&ack_req.to_bytes(), "Route"),
        ["<sip:192.0.2.10:5070;lr;x=1>", "<sip:192.0.2.11;lr>"]
    );

    // a re-INVITE's 2xx with another Record-Route and Contact: the target moves, the route
    // set does not (RFC 3261 §12.2.1.2)
    let dest = alice.dialog_destination(&dialog).unwrap();
    alice
        .request_in_dialog(Instant::now(), &dialog, Method::Invite, dest)
        .unwrap();
    let reinvite = request_of(&sent(&mut alice)[0]);
    let seq = reinvite.cseq().seq;
    let text = bobs_response(
        &reinvite,
        200,
        "Record-Route: <sip:192.0.2.77;lr>\r\n",
        "sip:bob@192.0.2.22",
        seq,
    );
    feed(&mut alice, PROXY, Transport::Udp, text);
    assert_eq!(
        routes(&alice),
        ["sip:192.0.2.10:5070;lr;x=1", "sip:192.0.2.11;lr"]
    );
    assert_eq!(
        alice.dialog(&dialog).unwrap().remote_target_text(),
        "sip:bob@192.0.2.22"
    );
}

/// A WebSocket client's INVITE straight to Bob over its own connection, with the made-up
/// Contact SIP.js and JsSIP write.
fn ws_invite(contact: &str) -> String {
    format!(
        "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/WS abcdef.invalid;branch=z9hG4bKws1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:web@192.0.2.2>;tag=w1\r\nTo: <sip:bob@192.0.2.2>\r\n\
         Call-ID: ws-1\r\nCSeq: 1 INVITE\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn requests_to_a_websocket_client_go_back_over_its_connection() {
    let client: SocketAddr = "192.0.2.50:53124".parse().unwrap();
    for contact in [
        "sip:k3j2@abcdef.invalid;transport=ws",
        "sip:k3j2@192.0.2.50:5060;transport=ws",
        "sip:k3j2@198.51.100.7:5060;transport=tcp;ob",
    ] {
        let mut bob = core("192.0.2.2:8080", "bob", Transport::Ws);
        let id = incoming_id(&feed(
            &mut bob,
            "192.0.2.50:53124",
            Transport::Ws,
            ws_invite(contact),
        ));
        let ok = bob.response(id, 200).unwrap();
        let dialog = bob.respond(Instant::now(), id, ok).unwrap().unwrap();
        let ok = sent(&mut bob);
        assert_eq!(ok[0].destination, client, "the 200 over the connection");
        let dest = bob.dialog_destination(&dialog).unwrap();
        assert_eq!(dest, client, "{contact}: the flow, not the Contact");
        bob.request_in_dialog(Instant::now(), &dialog, Method::Bye, dest)
            .unwrap();
        let bye = &sent(&mut bob)[0];
        assert_eq!(bye.destination, client);
        assert_eq!(bye.transport, Transport::Ws, "{contact}");
        assert_eq!(
            request_of(bye).uri().to_string(),
            contact,
            "the Request-URI is still the Contact"
        );
    }
}

#[test]
fn a_resolvable_contact_over_udp_is_used_as_written() {
    let mut bob = core("192.0.2.2:5060", "bob", Transport::Udp);
    let id = incoming_id(&feed(
        &mut bob,
        "192.0.2.50:5060",
        Transport::Udp,
        ws_invite("sip:k3j2@192.0.2.60:5062")
            .replace("SIP/2.0/WS abcdef.invalid", "SIP/2.0/UDP 192.0.2.50:5060"),
    ));
    let ok = bob.response(id, 200).unwrap();
    let dialog = bob.respond(Instant::now(), id, ok).unwrap().unwrap();
    assert_eq!(
        bob.dialog_destination(&dialog).unwrap(),
        "192.0.2.60:5062".parse::<SocketAddr>().unwrap()
    );
    assert!(bob.dialog(&dialog).unwrap().flow.is_none());
}

/// What `dialog_route` reads once for a request (its address, transport and whether the hop
/// is named) is what the request then goes with, proxy or no proxy.
#[test]
fn the_dialog_route_gives_a_request_s_address_transport_and_name_at_once() {
    let proxy: SocketAddr = PROXY.parse().unwrap();
    for (rr, destination, transport, named) in [
        (
            "Record-Route: <sip:192.0.2.10:5070;lr;transport=tcp>\r\n",
            Some(proxy),
            Some(Transport::Tcp),
            false,
        ),
        // a host name needs DNS: the driver resolves it, TLS names the connection by it
        (
            "Record-Route: <sip:p1.example.com;lr;transport=tls>\r\n",
            None,
            Some(Transport::Tls),
            true,
        ),
        // a transport we do not know is read again from the route's text (and the locator,
        // which does not know it either, names no address)
        (
            "Record-Route: <sip:192.0.2.10:5070;lr;transport=x-quic>\r\n",
            None,
            Some(Transport::Other("X-QUIC".into())),
            false,
        ),
        // no proxy: the Contact is the next hop
        ("", Some(ALICE.parse().unwrap()), None, false),
    ] {
        let (mut bob, dialog) = answered_call(rr);
        let route = bob.dialog_route(&dialog).unwrap();
        assert_eq!(route.destination, destination, "{rr}");
        assert_eq!(route.transport, transport, "{rr}");
        assert_eq!(route.named, named, "{rr}");
        assert!(!route.over_flow, "{rr}: no connection to use");
        assert_eq!(bob.dialog_destination(&dialog), destination, "{rr}");
        let to = destination.unwrap_or(proxy);
        bob.request_in_dialog_over(
            Instant::now(),
            &dialog,
            Method::Bye,
            to,
            route.transport.clone(),
            Vec::new(),
            None,
        )
        .unwrap();
        let bye = &sent(&mut bob)[0];
        assert_eq!(bye.destination, to, "{rr}");
        // (an unknown transport is the driver's to refuse)
        let want = route.transport.clone().unwrap_or(Transport::Udp);
        assert_eq!(bye.transport, want, "{rr}");
        // the hint and the plain call agree
        let (mut again, dialog) = answered_call(rr);
        again
            .request_in_dialog(Instant::now(), &dialog, Method::Bye, to)
            .unwrap();
        assert_eq!(sent(&mut again)[0].transport, want, "{rr}");
    }
}

/// A WebSocket client's dialog: its requests go over the connection it came in on, and the
/// route says so.
#[test]
fn the_dialog_route_of_a_websocket_client_is_its_connection() {
    let mut bob = core("192.0.2.2:8080", "bob", Transport::Ws);
    let id = incoming_id(&feed(
        &mut bob,
        "192.0.2.50:53124",
        Transport::Ws,
        ws_invite("sip:k3j2@abcdef.invalid;transport=ws"),
    ));
    let ok = bob.response(id, 200).unwrap();
    let dialog = bob.respond(Instant::now(), id, ok).unwrap().unwrap();
    let route = bob.dialog_route(&dialog).unwrap();
    assert!(route.over_flow);
    assert_eq!(route.destination, Some("192.0.2.50:53124".parse().unwrap()));
    assert_eq!(route.transport, Some(Transport::Ws));
    assert!(route.named, "abcdef.invalid is a name");
}
