//! Property tests: build → serialise → parse gives the same values, and parse → serialise is
//! byte-exact for messages that were not modified, whatever their spacing and folding.

use proptest::prelude::*;
use sipua_message::header::{Contact, Expires, MediaType};
use sipua_message::{
    Header, HeaderName, Host, Message, Method, NameAddr, Params, RequestBuilder, Response, Scheme,
    SipUri, Transport, Uri, UriParams, Via,
};

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,3}".prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|a| Host::Ipv4(a.into())),
        any::<[u16; 8]>().prop_map(|a| Host::Ipv6(a.into())),
    ]
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        proptest::option::of("[ -~]{1,12}"),
        proptest::option::of("[a-z0-9&=+$,]{1,8}"),
        host(),
        proptest::option::of(1u16..),
        proptest::collection::vec((token(), proptest::option::of("[ -~]{1,8}")), 0..3),
        proptest::collection::vec(("[a-zA-Z]{1,6}", "[ -~]{0,8}"), 0..2),
    )
        .prop_map(
            |(sips, user, password, host, port, params, headers)| SipUri {
                scheme: if sips { Scheme::Sips } else { Scheme::Sip },
                password: password.filter(|_| user.is_some()),
                user,
                host,
                port,
                params: UriParams(params),
                headers,
            },
        )
}

fn params() -> impl Strategy<Value = Params> {
    proptest::collection::vec((token(), proptest::option::of("[ -~]{0,10}")), 0..3).prop_map(|ps| {
        let mut p = Params::new();
        for (n, v) in ps {
            if !p.contains(&n) {
                p.set(&n, v.as_deref().filter(|v| !v.is_empty()));
            }
        }
        p
    })
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (proptest::option::of("[ -~]{0,16}"), sip_uri(), params()).prop_map(|(display, uri, params)| {
        NameAddr {
            display,
            uri: Uri::Sip(uri),
            params,
        }
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Register),
        Just(Method::Bye),
        Just(Method::Options),
        Just(Method::Subscribe),
        "[A-Z]{3,10}".prop_map(|m| Method::parse(m.as_bytes()).unwrap()),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop_oneof![
            Just(Transport::Udp),
            Just(Transport::Tcp),
            Just(Transport::Tls),
            Just(Transport::Ws)
        ],
        host(),
        proptest::option::of(1u16..),
        "[a-zA-Z0-9]{1,16}",
        any::<bool>(),
    )
        .prop_map(|(t, h, p, b, rport)| {
            let mut v = Via::new(t, h, p, &format!("z9hG4bK{b}"));
            if rport {
                v.params.set("rport", None);
            }
            v
        })
}

prop_compose! {
    fn request()(
        method in method(),
        uri in sip_uri(),
        vias in proptest::collection::vec(via(), 1..4),
        from in name_addr(),
        to in name_addr(),
        call_id in "[a-zA-Z0-9.!%*_+`'~-]{1,20}(@[a-z0-9.]{1,10})?",
        seq in 0u32..,
        max_forwards in any::<u8>(),
        contacts in proptest::collection::vec(name_addr(), 0..3),
        expires in proptest::option::of(any::<u32>()),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) -> (RequestBuilder, Vec<NameAddr>, Option<u32>, Vec<u8>) {
        let mut b = RequestBuilder::new(method, Uri::Sip(uri)).from(from).to(to).call_id(call_id).cseq(seq)
            .max_forwards(max_forwards);
        for v in vias {
            b = b.via(v);
        }
        for c in &contacts {
            b = b.typed(&Contact::Addr(c.clone()));
        }
        if let Some(e) = expires {
            b = b.typed(&Expires(e));
        }
        if !body.is_empty() {
            b = b.body(MediaType::new("application", "octet-stream"), body.clone());
        }
        (b, contacts, expires, body)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn built_requests_parse_back_to_the_same_values((builder, contacts, expires, body) in request()) {
        let req = builder.build().unwrap();
        let bytes = req.to_bytes();
        let parsed = Message::parse(&bytes).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
        let Message::Request(p) = parsed else { panic!("not a request") };
        prop_assert_eq!(p.method(), req.method());
        prop_assert_eq!(p.uri(), req.uri());
        prop_assert_eq!(p.via().unwrap(), req.via().unwrap());
        prop_assert_eq!(p.from(), req.from());
        prop_assert_eq!(p.to(), req.to());
        prop_assert_eq!(p.call_id(), req.call_id());
        prop_assert_eq!(p.cseq(), req.cseq());
        prop_assert_eq!(p.max_forwards(), req.max_forwards());
        let got: Vec<NameAddr> = p.contacts().unwrap().into_iter().map(|c| c.addr().unwrap().clone()).collect();
        prop_assert_eq!(got, contacts);
        prop_assert_eq!(p.typed::<Expires>().map(|e| e.unwrap().0), expires);
        prop_assert_eq!(p.body(), &body[..]);
        // and the parsed message serialises to exactly what it was parsed from
        prop_assert_eq!(p.to_bytes(), bytes);
    }

    #[test]
    fn a_response_with_reason_and_body_in_one_pass_is_the_one_built_in_steps(
        (builder, ..) in request(),
        status in 100u16..700,
        tag in token(),
        reason in proptest::option::of("[A-Za-z][ -~]{0,20}"),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        sdp in any::<bool>(),
    ) {
        let req = builder.build().unwrap();
        let ct = if sdp { MediaType::new("application", "sdp") } else {
            let mut t = MediaType::new("text", "plain");
            t.params.set("charset", Some("utf-8"));
            t
        };
        let extra = [Header::new(HeaderName::Contact, "<sip:u@192.0.2.9>")];
        let one = Response::from_request_with_parts(
            &req, status, reason.as_deref(), Some(&tag), Some("SIP/2.0/UDP h;branch=z9hG4bKq"),
            &extra, (!body.is_empty()).then_some((&ct, &body[..])),
        ).unwrap();
        let mut steps = Response::from_request_with_via_text(
            &req, status, Some(&tag), Some("SIP/2.0/UDP h;branch=z9hG4bKq"), &extra,
        );
        if reason.is_some() {
            steps.set_status(status, reason.as_deref()).unwrap();
        }
        if !body.is_empty() {
            steps.set_body(Some(&ct), &body).unwrap();
        }
        prop_assert_eq!(one.to_bytes(), steps.to_bytes());
        prop_assert_eq!(one.body(), &body[..]);
    }

    #[test]
    fn responses_copy_the_request((builder, ..) in request(), status in 100u16..700, tag in token()) {
        let req = builder.build().unwrap();
        let mut resp = Response::from_request(&req, status);
        resp.set_to_tag(&tag).unwrap();
        let bytes = resp.to_bytes();
        let Message::Response(p) = Message::parse(&bytes).unwrap() else { panic!("not a response") };
        prop_assert_eq!(p.status(), status);
        prop_assert_eq!(p.via().unwrap(), req.via().unwrap());
        prop_assert_eq!(&p.from(), &req.from());
        prop_assert_eq!(p.to().unwrap().tag(), Some(tag.as_str()));
        prop_assert_eq!(&p.to().unwrap().uri, &req.to().unwrap().uri);
        prop_assert_eq!(p.cseq(), req.cseq());
        prop_assert_eq!(p.call_id(), req.call_id());
    }

    #[test]
    fn unmodified_messages_serialise_byte_for_byte(
        (builder, ..) in request(),
        spacing in proptest::collection::vec((0usize..3, 0usize..3, any::<bool>(), any::<bool>()), 64),
        compact in any::<bool>(),
    ) {
        // respell every header line: spaces around ':', compact names, folded values
        let req = builder.build().unwrap();
        let text = req.to_bytes();
        let head_end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let mut lines = text[..head_end].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let mut out = lines.next().unwrap().to_vec();
        out.extend_from_slice(b"\r\n");
        for (i, line) in lines.enumerate() {
            let (before, after, fold, lower) = spacing[i % spacing.len()];
            let colon = line.iter().position(|&b| b == b':').unwrap();
            let name = HeaderName::from_bytes(&line[..colon]);
            let mut n = match (compact, name.compact()) {
                (true, Some(c)) => c.to_string(),
                _ => name.as_str().to_string(),
            };
            if lower {
                n = n.to_ascii_lowercase();
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(" ".repeat(before).as_bytes());
            out.push(b':');
            out.extend_from_slice(" ".repeat(after).as_bytes());
            if fold {
                out.extend_from_slice(b"\r\n ");
            }
            out.extend_from_slice(line[colon + 1..].trim_ascii_start());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&text[head_end + 2..]);
        let parsed = Message::parse(&out).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
        prop_assert_eq!(&parsed.to_bytes()[..], &out[..]);
        let Message::Request(p) = parsed else { panic!("not a request") };
        prop_assert_eq!(p.via().unwrap(), req.via().unwrap());
        prop_assert_eq!(p.from(), req.from());
        prop_assert_eq!(p.cseq(), req.cseq());
    }
}

#[test]
fn header_mutation_keeps_core_values_in_step() {
    let raw = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let Message::Request(mut r) = Message::parse(raw).unwrap() else {
        panic!()
    };
    r.push_via(Via::new(
        Transport::Tcp,
        Host::Domain("proxy.example.com".into()),
        Some(5060),
        "z9hG4bK2",
    ))
    .unwrap();
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK2"));
    assert_eq!(r.via().unwrap().len(), 2);
    r.set_header(Header::new(HeaderName::CallId, "new@id"))
        .unwrap();
    assert_eq!(r.call_id(), "new@id");
    assert!(r
        .set_header(Header::new(HeaderName::CallId, "bad id"))
        .is_err());
    assert_eq!(r.call_id(), "new@id");
    assert!(r.remove_header(&HeaderName::From).is_err());
    assert!(r
        .push_header(Header::new(HeaderName::To, "<sip:x@y>"))
        .is_err());
    r.set_body(Some(&MediaType::new("text", "plain")), b"hello")
        .unwrap();
    let Message::Request(p) = Message::parse(&r.to_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(p.via().unwrap().len(), 2);
    assert_eq!(p.top_via().unwrap().branch(), Some("z9hG4bK2"));
    assert_eq!(p.call_id(), "new@id");
    assert_eq!(p.body(), b"hello");
    assert!(p.content_type().unwrap().is("text", "plain"));
    let mut p = p;
    assert!(p.pop_via().is_some());
    assert!(p.pop_via().is_none(), "the last Via stays");
    let Message::Request(q) = Message::parse(&p.to_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(q.top_via().unwrap().branch(), Some("z9hG4bK1"));
}

#[test]
fn ack_and_cancel_follow_17_1_1_3_and_9_1() {
    let raw = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
        Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKother\r\n\
        Route: <sip:proxy.example.com;lr>\r\nMax-Forwards: 70\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n\
        Call-ID: 3848276298220188511@atlanta.example.com\r\nCSeq: 31862 INVITE\r\n\
        Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";
    let Message::Request(invite) = Message::parse(raw).unwrap() else {
        panic!()
    };
    let mut busy = Response::from_request(&invite, 486);
    busy.set_to_tag("8321234356").unwrap();
    let ack = invite.ack_for(&busy).unwrap();
    assert_eq!(ack.method(), &Method::Ack);
    assert_eq!(ack.uri_bytes(), b"sip:bob@biloxi.example.com");
    assert_eq!(ack.via().unwrap().len(), 1);
    assert_eq!(ack.via_key().branch, Some("z9hG4bKnashds8"));
    assert_eq!(ack.to_tag(), Some("8321234356"));
    assert_eq!(ack.from_tag(), Some("9fxced76sl"));
    assert_eq!((ack.cseq().seq, &ack.cseq().method), (31862, &Method::Ack));
    assert!(ack.headers().contains(&HeaderName::Route));
    assert!(ack.body().is_empty());
    let cancel = invite
        .cancel(&[Header::new(
            HeaderName::Reason,
            "SIP;cause=200;text=\"Call completed elsewhere\"",
        )])
        .unwrap();
    assert_eq!(cancel.method(), &Method::Cancel);
    assert_eq!(cancel.via_key().branch, Some("z9hG4bKnashds8"));
    assert_eq!(cancel.via().unwrap().len(), 1);
    assert_eq!(cancel.to_tag(), None);
    assert_eq!(
        (cancel.cseq().seq, &cancel.cseq().method),
        (31862, &Method::Cancel)
    );
    assert_eq!(
        cancel
            .typed::<sipua_message::header::Reason>()
            .unwrap()
            .unwrap()
            .cause(),
        Some(200)
    );
    assert!(ack.cancel(&[]).is_err());
}

#[test]
fn response_in_one_pass_with_tag_via_and_extra_headers() {
    let raw = b"INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport, SIP/2.0/UDP p;branch=z9hG4bKp\r\n\
        From: <sip:alice@a.example.com>;tag=f\r\nTo: sip:bob@192.0.2.2\r\nCall-ID: c\r\nCSeq: 2 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n";
    let Message::Request(req) = Message::parse(raw).unwrap() else {
        panic!()
    };
    let mut via = req.top_via().unwrap().clone();
    via.params.set("received", Some("198.51.100.7"));
    via.params.set("rport", Some("40000"));
    let contact = Header::new(HeaderName::Contact, "<sip:bob@192.0.2.2>");
    let r = Response::from_request_with(&req, 180, Some("t9"), Some(&via), &[contact]);
    assert_eq!(r.status(), 180);
    assert_eq!(r.to_tag(), Some("t9"));
    assert_eq!(r.to().unwrap().uri.to_string(), "sip:bob@192.0.2.2");
    let vias = r.via().unwrap();
    assert_eq!(vias.len(), 2, "the second Via value of the line is kept");
    assert_eq!(vias[0].rport(), Some(Some(40000)));
    assert_eq!(vias[1].branch(), Some("z9hG4bKp"));
    assert_eq!(r.contacts().unwrap().len(), 1);
    // a tag already there is kept; a bad tag falls back to a plain copy
    let plain = Response::from_request_with(&req, 200, Some("bad tag"), None, &[]);
    assert_eq!(plain.to_tag(), None);
    // a reason phrase cannot break the start line; the fallback still carries reason and body
    let sdp = MediaType::new("application", "sdp");
    let e = Response::from_request_with_parts(&req, 200, Some("OK\r\nX: y"), None, None, &[], None);
    assert!(e.is_err());
    let r = Response::from_request_with_parts(
        &req,
        183,
        Some("Early Media"),
        Some("bad tag"),
        None,
        &[],
        Some((&sdp, b"v=0\r\n")),
    )
    .unwrap();
    assert_eq!(r.reason(), "Early Media");
    assert_eq!(r.body(), b"v=0\r\n");
    assert!(r.content_type().is_some_and(|t| t.is("application", "sdp")));
}
