//! What `Message::parse` checks at once (framing, start line, the transaction key) and what it
//! leaves to the first typed access or `validate()` (the rest of Via, From, To, Contact).

use sipua_message::Message;

fn msg(from: &str, vias: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: {vias}\r\nFrom: {from}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: lazy-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const VIA: &str = "SIP/2.0/UDP a.example.com;branch=z9hG4bK1";

#[test]
fn key_parameters_must_be_tokens() {
    let e = Message::parse(&msg("<sip:a@b>;tag", VIA)).unwrap_err();
    assert_eq!(e.to_string(), "invalid From header: tag is not a token");
    let e = Message::parse(&msg("<sip:a@b>;tag=\"x\"", VIA)).unwrap_err();
    assert_eq!(e.to_string(), "invalid From header: tag is not a token");
    let e = Message::parse(&msg("<sip:a@b>;tag=1", "SIP/2.0/UDP h;branch")).unwrap_err();
    assert_eq!(e.to_string(), "invalid Via header: branch is not a token");
}

#[test]
fn address_grammar_errors_surface_on_use() {
    let m = Message::parse(&msg("<sip:a b@example.com>;tag=1", VIA)).unwrap();
    assert_eq!(m.from_tag(), Some("1"));
    let e = m.from().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid From header: bad character in user part"
    );
    assert_eq!(m.validate().unwrap_err(), e);
    assert_eq!(e.status_code(), 400);
}

#[test]
fn lower_vias_are_checked_on_use() {
    let m = Message::parse(&msg("<sip:a@b>;tag=1", &format!("{VIA}, SIP/2.0/UDP ;;"))).unwrap();
    assert_eq!(m.via_key().branch, Some("z9hG4bK1"));
    assert!(m.via().is_err());
    assert!(m.validate().is_err());
    let ok = Message::parse(&msg(
        "<sip:a@b>;tag=1",
        &format!("{VIA}, SIP/2.0/TCP p.example.com:5070"),
    ))
    .unwrap();
    assert_eq!(ok.via().unwrap().len(), 2);
    assert_eq!(ok.via().unwrap()[1].port, Some(5070));
}

#[test]
fn quick_validation_gives_the_verdict_of_validate() {
    let addresses = [
        "<sip:alice@example.com>",
        "Alice <sip:alice@192.0.2.1:5060;transport=tcp>",
        "\"A \\\"B\\\"\" <sips:alice@[2001:db8::1]>",
        "sip:alice@example.com;x=1",
        "<tel:+1-555-0100;phone-context=example.com>",
        "<http://example.com/alice>",
        "<sip:al ice@example.com>",
        "<sip:alice@exa mple.com>",
        "<sip:alice@example.com:99999>",
        "<sip:alice@256.1.1.1>",
        "<sip:%zz@example.com>",
        "<sip:alice@example.com;=x>",
        "<x-:a b>",
    ];
    let contacts = [
        None,
        Some("*"),
        Some("<sip:a@example.com>;expires=60;q=0.5"),
        Some("<sip:a@example.com>;tag=\"x y\""),
        Some("<sip:a@example.com>, <sip:b@example.com>"),
        Some("<sip:a@example.com>, <sip:b c@example.com>"),
        Some("<sip:a@example.com>,"),
        Some("sip:a@example.com;x"),
        Some("<sip:a@example.com>;=1"),
    ];
    for (i, from) in addresses.iter().enumerate() {
        for to in addresses {
            let contact = contacts[i % contacts.len()]
                .map(|c| format!("Contact: {c}\r\n"))
                .unwrap_or_default();
            let raw = format!(
                "BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: {from};tag=1\r\nTo: {to};tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\
                 {contact}Content-Length: 0\r\n\r\n"
            );
            let Ok(Message::Request(req)) = Message::parse(raw.as_bytes()) else {
                continue;
            };
            let fresh = || match Message::parse(raw.as_bytes()) {
                Ok(Message::Request(r)) => r,
                _ => unreachable!(),
            };
            let verdict = fresh().validate();
            assert_eq!(req.validate_quick(), verdict, "{from} / {to} / {contact}");
            // with From and To parsed first, as for a request that makes a dialog
            let warm = fresh();
            let _ = (warm.from(), warm.to());
            assert_eq!(warm.validate_quick(), verdict, "{from} / {to} / {contact}");
            // with From, To and Contact parsed by the caller, as for a request that makes a
            // dialog
            let own = fresh();
            let parts = (own.owned_from_untagged(), own.owned_to(), own.contacts());
            let vias = own.validate_vias();
            assert_eq!(
                parts.0.is_ok() && parts.1.is_ok() && parts.2.is_ok() && vias.is_ok(),
                verdict.is_ok(),
                "{from} / {to} / {contact}"
            );
        }
    }
    for contact in contacts.into_iter().flatten() {
        let raw = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n\
             CSeq: 2 INVITE\r\nContact: {contact}\r\nContact: <sip:z@example.com>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let m = || Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(m().validate_quick(), m().validate(), "{contact}");
    }
}

#[test]
fn request_uri_user_read_in_place_is_the_parsed_one() {
    for uri in [
        "sip:bob@example.com",
        "sips:bob:secret@example.com:5061;transport=tcp",
        "sip:example.com",
        "sip:+1-212-555;phone-context=x@example.com;user=phone",
        "SIP:Bob@Example.COM",
        "sip:host;x=a@b",
        "sip:b%6Fb@example.com",
        "tel:+1-201-555-0123",
    ] {
        let raw = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x\r\n\
             CSeq: 1 OPTIONS\r\n\r\n"
        );
        let Message::Request(req) = Message::parse(raw.as_bytes()).unwrap() else {
            panic!("{uri}");
        };
        let parsed = req.uri().as_sip().map(|u| u.user.as_deref());
        match req.uri_sip_user() {
            Some(user) => assert_eq!(Some(user), parsed, "{uri}"),
            // escapes and other schemes are left to the parse
            None => assert!(uri.contains('%') || !uri.starts_with("sip"), "{uri}"),
        }
    }
}

#[test]
fn addresses_without_tags_are_the_parsed_ones_less_their_tags() {
    for from in [
        "<sip:a@example.com>;tag=1",
        "\"A\" <sip:a@example.com;transport=tcp>;x=1;TAG=2;y;tag=3",
        "sip:a@example.com;tag=1;z=\"q\"",
        "A <sip:a@example.com>",
    ] {
        let m = Message::parse(&msg(from, VIA)).unwrap();
        let mut expected = m.from().unwrap().clone();
        expected.params.remove("tag");
        // before and after the message keeps its own parse
        assert_eq!(m.owned_from_untagged().unwrap(), expected, "{from}");
        let _ = m.from();
        assert_eq!(m.owned_from_untagged().unwrap(), expected, "{from}");
        assert_eq!(m.owned_from().unwrap(), *m.from().unwrap(), "{from}");
    }
    let m = Message::parse(&msg("<sip:a b@example.com>;tag=1", VIA)).unwrap();
    assert_eq!(
        m.owned_from_untagged().unwrap_err(),
        m.from().unwrap_err().clone()
    );
}
