//! Every message of the corpus (RFC 4475, RFC 5118, real captures) gets the verdict that
//! `tests/corpus/expectations.tsv` gives it, and the fields the notes talk about come out right.

use std::path::PathBuf;

use sipua_message::header::{Contact, Require, Supported, WwwAuthenticate};
use sipua_message::{ErrorKind, HeaderName, Host, Message, Method, Transport, Uri};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn load(name: &str) -> Vec<u8> {
    let tsv = std::fs::read_to_string(corpus().join("expectations.tsv")).unwrap();
    let row = tsv
        .lines()
        .find(|l| l.split('\t').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in expectations.tsv"));
    let file = row.split('\t').nth(4).unwrap();
    std::fs::read(corpus().join(file)).unwrap()
}

fn parse(name: &str) -> Message {
    Message::parse(&load(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn req(name: &str) -> sipua_message::Request {
    match parse(name) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name} is a response"),
    }
}

#[test]
fn every_message_gets_its_verdict() {
    let tsv = std::fs::read_to_string(corpus().join("expectations.tsv")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (name, expected, file, action) = (cols[0], cols[2], cols[4], cols[5]);
        let data = std::fs::read(corpus().join(file)).unwrap();
        let result = Message::parse(&data);
        let verdict_ok = match (action, &result) {
            ("accept" | "accept-lenient", Ok(m)) => {
                if let Err(e) = m.validate() {
                    failures.push(format!("{name}: parsed but does not validate: {e}"));
                }
                let start = match m {
                    Message::Request(r) => r.method().to_string(),
                    Message::Response(r) => r.status().to_string(),
                };
                if start != expected {
                    failures.push(format!(
                        "{name}: start line gave {start}, expected {expected}"
                    ));
                }
                // unmodified messages serialise byte for byte (up to the end of the body)
                let out = m.to_bytes();
                let begin = data.iter().position(|&b| b != b'\r' && b != b'\n').unwrap();
                if data[begin..].get(..out.len()) != Some(&out[..]) {
                    failures.push(format!("{name}: serialisation differs from input"));
                }
                true
            }
            ("reject-400" | "reject-501-or-400" | "discard", Err(e)) => e.status_code() == 400,
            ("reject-505", Err(e)) => e.kind() == ErrorKind::Version && e.status_code() == 505,
            ("reject-400-or-lenient", Ok(_)) => true,
            ("reject-400-or-lenient", Err(e)) => e.status_code() == 400,
            _ => false,
        };
        if !verdict_ok {
            failures.push(format!(
                "{name}: action {action}, got {:?}",
                result.as_ref().map(|_| "accepted")
            ));
        }
        if let Err(e) = &result {
            // the reason must be usable as a reason phrase: one line, printable
            let text = e.to_string();
            if text.is_empty() || text.contains(['\r', '\n']) {
                failures.push(format!("{name}: unusable reason {text:?}"));
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 244, "expectations.tsv rows");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn wsinv_whitespace_torture() {
    let r = req("wsinv");
    assert_eq!(r.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(r.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(
        r.from().unwrap().display.as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(r.max_forwards(), Some(68));
    assert_eq!(r.cseq().seq, 9);
    assert_eq!(r.cseq().method, Method::Invite);
    let via = r.via().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!(via[0].branch(), Some("390skdjuw"));
    assert_eq!(via[1].transport, Transport::Tcp);
    assert_eq!(via[1].host, Host::Domain("spindle.example.com".into()));
    assert_eq!(via[2].branch(), Some("z9hG4bK30239"));
    // folded unknown header comes out unfolded, and keeps its raw bytes
    let nf = r
        .headers()
        .get(&HeaderName::new("NewFangledHeader"))
        .unwrap();
    assert_eq!(nf.unfolded(), "newfangled value continued newfangled value");
    assert_eq!(
        r.headers()
            .get(&HeaderName::new("UnknownHeaderWithUnusualValue"))
            .unwrap()
            .value(),
        b";;,,;;,;"
    );
    let contacts = r.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    let c = contacts[0].addr().unwrap();
    assert_eq!(c.display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c.params.value("newparam"), Some("newvalue"));
    assert!(c.params.contains("secondparam"));
    assert_eq!(contacts[0].q(), Some(0.33));
    assert_eq!(r.headers().get(&HeaderName::Subject).unwrap().value(), b"");
    assert_eq!(r.body().len(), 150);
}

#[test]
fn intmeth_unusual_tokens() {
    let r = req("intmeth");
    assert_eq!(
        r.method(),
        &Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    let u = r.uri().as_sip().unwrap();
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(
        r.to().unwrap().display.as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );
    assert_eq!(
        r.from().unwrap().display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(r.from().unwrap().tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        r.from().unwrap().params.value("fromParam''~+*_!.-%"),
        Some("\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}")
    );
    assert_eq!(r.call_id(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
}

#[test]
fn escapes_are_decoded_once() {
    let r = req("esc01");
    assert_eq!(
        r.uri().as_sip().unwrap().user.as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(
        r.to().unwrap().uri.as_sip().unwrap().user.as_deref(),
        Some("user")
    );
    assert_eq!(
        r.from().unwrap().uri.as_sip().unwrap().user.as_deref(),
        Some("I have spaces")
    );
    let c = r.contacts().unwrap();
    let u = c[0].addr().unwrap().uri.as_sip().unwrap();
    assert_eq!(u.user.as_deref(), Some("caller"));
    assert!(u.lr());
    assert_eq!(u.params.value("name"), Some("value%41"));

    let r = req("escnull");
    assert_eq!(
        r.to().unwrap().uri.as_sip().unwrap().user.as_deref(),
        Some("null-\0-null")
    );
    let c = r.contacts().unwrap();
    assert_eq!(c.len(), 2);
    let users: Vec<_> = c
        .iter()
        .map(|c| {
            c.addr()
                .unwrap()
                .uri
                .as_sip()
                .unwrap()
                .user
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(users, vec!["\0".to_string(), "\0\0".to_string()]);
    assert!(!c[0]
        .addr()
        .unwrap()
        .uri
        .equivalent(&c[1].addr().unwrap().uri));

    let r = req("esc02");
    assert_eq!(r.method(), &Method::Extension("RE%47IST%45R".into()));
    assert_eq!(r.to().unwrap().display.as_deref(), Some("%Z%45"));
    assert_eq!(r.contacts().unwrap().len(), 2);
    assert!(r.headers().get(&HeaderName::new("C%6Fntact")).is_some());
}

#[test]
fn display_names_and_brackets() {
    assert_eq!(
        req("lwsdisp").from().unwrap().display.as_deref(),
        Some("caller")
    );
    let r = req("longreq");
    assert_eq!(r.via().unwrap().len(), 34);
    assert!(
        r.from()
            .unwrap()
            .uri
            .as_sip()
            .unwrap()
            .user
            .as_deref()
            .unwrap()
            .len()
            > 100
    );
    assert!(r.from().unwrap().tag().unwrap().len() > 20);
    assert!(r.to().unwrap().display.as_deref().unwrap().len() > 100);
    assert!(r.call_id().len() > 100);
}

#[test]
fn datagram_framing() {
    let r = req("dblreq");
    assert_eq!(r.method(), &Method::Register);
    assert!(r.body().is_empty());
    let r = req("mpart01");
    assert_eq!(r.body().len(), 553);
    assert!(r.body().contains(&0));
    let r = req("inv2543");
    assert!(!r.body().is_empty());
    assert_eq!(r.top_via().unwrap().branch(), None);
    assert_eq!(r.max_forwards(), None);
    assert_eq!(r.from().unwrap().tag(), None);
}

#[test]
fn user_part_with_semicolon_and_folded_accept() {
    let r = req("semiuri");
    let u = r.uri().as_sip().unwrap();
    assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
    assert_eq!(u.host, Host::Domain("example.com".into()));
    let accept = r.typed_all::<sipua_message::header::Accept>().unwrap();
    assert_eq!(accept.len(), 6);
    assert!(accept[5].0.is("message", "sipfrag"));
}

#[test]
fn transports_and_reason_phrases() {
    let r = req("transports");
    let t: Vec<_> = r
        .via()
        .unwrap()
        .iter()
        .map(|v| v.transport.clone())
        .collect();
    assert_eq!(
        t,
        vec![
            Transport::Udp,
            Transport::Sctp,
            Transport::Tls,
            Transport::Other("UNKNOWN".into()),
            Transport::Tcp
        ]
    );
    let Message::Response(r) = parse("unreason") else {
        panic!()
    };
    assert!(r.reason().contains('='));
    assert!(r.reason().ends_with("простое"), "{}", r.reason());
    let Message::Response(r) = parse("noreason") else {
        panic!()
    };
    assert_eq!(r.reason(), "");
}

#[test]
fn schemes_and_contact_params() {
    assert!(matches!(req("unkscm").uri(), Uri::Absolute(a) if a.scheme == "nobodyKnowsThisScheme"));
    assert_eq!(req("novelsc").uri().scheme(), "soap.beep");
    let r = req("unksm2");
    assert_eq!(r.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(r.from().unwrap().uri.scheme(), "http");
    assert_eq!(
        r.contacts().unwrap()[0].addr().unwrap().uri.scheme(),
        "name"
    );

    let c = req("cparam01").contacts().unwrap();
    let a = c[0].addr().unwrap();
    assert!(a.params.contains("unknownparam"));
    assert!(a.uri.as_sip().unwrap().params.is_empty());
    let c = req("cparam02").contacts().unwrap();
    let a = c[0].addr().unwrap();
    assert!(a.params.is_empty());
    assert!(a.uri.as_sip().unwrap().params.contains("unknownparam"));
    let c = req("regescrt").contacts().unwrap();
    let u = c[0].addr().unwrap().uri.as_sip().unwrap();
    assert_eq!(
        u.headers,
        vec![("Route".to_string(), "<sip:sip.example.com>".to_string())]
    );

    let r = req("bext01");
    let req_tags = r.typed_all::<Require>().unwrap();
    assert_eq!(
        req_tags,
        vec![
            Require("nothingSupportsThis".into()),
            Require("nothingSupportsThisEither".into())
        ]
    );
    assert_eq!(req("zeromf").max_forwards(), Some(0));
    assert!(!req("badbranch").top_via().unwrap().has_rfc3261_branch());
    let regaut = req("regaut01");
    assert!(regaut.headers().get(&HeaderName::Authorization).is_some());
}

#[test]
fn ipv6_messages() {
    let r = req("ipv6-good");
    assert_eq!(
        r.uri().as_sip().unwrap().host,
        Host::Ipv6("2001:db8::10".parse().unwrap())
    );
    assert!(matches!(r.top_via().unwrap().host, Host::Ipv6(_)));
    let u = req("port-ambiguous").uri().as_sip().unwrap().clone();
    assert_eq!(
        (u.host, u.port),
        (Host::Ipv6("2001:db8::10:5070".parse().unwrap()), None)
    );
    let u = req("port-unambiguous").uri().as_sip().unwrap().clone();
    assert_eq!(
        (u.host, u.port),
        (Host::Ipv6("2001:db8::10".parse().unwrap()), Some(5070))
    );
    let r = req("via-received-param-with-delim");
    assert_eq!(
        r.top_via().unwrap().received(),
        Some(Host::Ipv6("2001:db8::9:255".parse().unwrap()))
    );
    let r = req("via-received-param-no-delim");
    assert_eq!(
        r.top_via().unwrap().received(),
        Some(Host::Ipv6("2001:db8::9:255".parse().unwrap()))
    );
    let r = req("ipv6-bug-abnf-3-colons");
    assert_eq!(
        r.uri().as_sip().unwrap().host,
        Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap())
    );
    let r = req("mult-ip-in-header");
    assert!(r
        .via()
        .unwrap()
        .iter()
        .any(|v| matches!(v.host, Host::Ipv4(_))));
    assert!(r.via().unwrap().iter().any(|v| v.port == Some(6050)));
}

#[test]
fn error_reasons_name_the_problem() {
    let reason = |n: &str| Message::parse(&load(n)).unwrap_err().to_string();
    assert_eq!(reason("badinv01"), "invalid Via header: empty parameter");
    assert!(
        reason("insuf").starts_with("missing "),
        "{}",
        reason("insuf")
    );
    assert!(
        reason("multi01").starts_with("more than one "),
        "{}",
        reason("multi01")
    );
    assert_eq!(
        reason("mismatch01"),
        "invalid CSeq header: method does not match the request"
    );
    assert_eq!(
        reason("mcl01"),
        "invalid Content-Length header: two different values"
    );
    assert_eq!(
        reason("clerr"),
        "invalid Content-Length header: larger than the body"
    );
    assert_eq!(reason("ncl"), "invalid Content-Length header: not a number");
    assert_eq!(reason("badvers"), "SIP version not supported");
    assert!(reason("ipv6-bad").contains("Request-URI"));
    assert!(reason("scalar02").contains("CSeq"));
    assert!(reason("bigcode").contains("status code"));
}

#[test]
fn real_world_extras() {
    // digest challenge from a softswitch
    let Message::Response(r) = parse("ndpi-siphello-f0010-401") else {
        panic!()
    };
    let ch = r.typed::<WwwAuthenticate>().unwrap().unwrap();
    assert!(ch.0.is_digest());
    assert!(ch.0.param("nonce").is_some());
    // IMS flow with preconditions and 100rel
    let r = req("lioneagle-volte-11-INVITE");
    let sup = r.typed_all::<Supported>().unwrap();
    assert!(sup.iter().any(|s| s.0 == "100rel"), "{sup:?}");
    assert!(matches!(r.contacts().unwrap()[0], Contact::Addr(_)));
    // a message modified still writes untouched headers byte for byte
    let data = load("wireshark-aaa-f0019-REGISTER");
    let Message::Request(mut r) = Message::parse(&data).unwrap() else {
        panic!()
    };
    r.set_max_forwards(69).unwrap();
    assert!(!r.is_pristine());
    let out = r.to_bytes();
    let lines = |b: &[u8]| -> Vec<Vec<u8>> {
        let head = &b[..b.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
        head.split(|&c| c == b'\n')
            .filter(|l| !l.to_ascii_lowercase().starts_with(b"max-forwards"))
            .map(<[u8]>::to_vec)
            .collect()
    };
    assert_eq!(lines(&out), lines(&data));
    assert_eq!(Message::parse(&out).unwrap().max_forwards(), Some(69));
}

#[test]
fn malformed_requests_still_get_an_error_response() {
    // every request the corpus says to reject, and that carries the five headers, can be
    // answered with its status code and the parse error as reason phrase
    let tsv = std::fs::read_to_string(corpus().join("expectations.tsv")).unwrap();
    let mut answered = 0;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (name, action, file) = (cols[0], cols[5], cols[4]);
        if !action.starts_with("reject") {
            continue;
        }
        let data = std::fs::read(corpus().join(file)).unwrap();
        let Err(err) = Message::parse(&data) else {
            continue;
        };
        let Some(resp) = sipua_message::error_response(&data, &err, "e1") else {
            assert!(
                ["insuf", "test"].contains(&name),
                "{name}: no error response"
            );
            continue;
        };
        let start = format!("SIP/2.0 {} {err}\r\n", err.status_code());
        assert!(resp.starts_with(start.as_bytes()), "{name}");
        let text = String::from_utf8_lossy(&resp);
        assert!(text.contains(";tag="), "{name}: {text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        answered += 1;
    }
    assert!(answered >= 15, "only {answered} answered");
    // responses are never answered
    let data = load("scalarlg");
    let err = Message::parse(&data).unwrap_err();
    assert!(sipua_message::error_response(&data, &err, "e1").is_none());
}

#[test]
fn an_error_response_does_not_send_a_huge_request_back() {
    // 1 500 Vias make the request too large; the 513 keeps the top Via (and what fits)
    let vias: String = (0..1500)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 192.0.2.{}:5060;branch=z9hG4bK{i}\r\n",
                i % 250
            )
        })
        .collect();
    let data = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n{vias}From: <sip:a@example.com>;tag=1\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: big\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let err = sipua_message::ParseError::too_large();
    let resp = sipua_message::error_response(data.as_bytes(), &err, "e1").unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(
        resp.len() <= sipua_message::MAX_ERROR_RESPONSE + 64,
        "{}",
        resp.len()
    );
    assert!(text.starts_with("SIP/2.0 513 "), "{text}");
    assert!(text.contains("branch=z9hG4bK0\r\n"), "the top Via");
    assert!(!text.contains("branch=z9hG4bK1499"), "not every Via");
    // a From too large to echo gets no answer at all
    let huge = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         From: <sip:{}@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: big\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(60_000)
    );
    assert!(sipua_message::error_response(huge.as_bytes(), &err, "e1").is_none());
}

/// A request of `extra` lines after the core headers, with Request-URI `uri`.
fn request_with(uri: &str, extra: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: lim\r\n\
         CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The answer a UAS sends to `data`, which must fail to parse.
fn answer_to(data: &str) -> String {
    let err = sipua_message::Message::parse(data.as_bytes()).unwrap_err();
    let resp = sipua_message::error_response(data.as_bytes(), &err, "t").unwrap();
    assert!(
        resp.len() <= sipua_message::MAX_ERROR_RESPONSE,
        "{} bytes echoed",
        resp.len()
    );
    assert!(
        !resp.windows(64).any(|w| w.iter().all(|&b| b == w[0])),
        "no long run echoed"
    );
    String::from_utf8(resp.to_vec()).unwrap()
}

#[test]
fn per_message_limits_get_414_and_513_and_nothing_large_back() {
    use sipua_message::{MAX_LINE_LENGTH, MAX_REQUEST_LINE, MAX_VIAS};
    // at the limits: accepted
    let uri = format!("sip:{}@example.com", "u".repeat(MAX_REQUEST_LINE - 40));
    sipua_message::Message::parse(request_with(&uri, "").as_bytes()).unwrap();
    let line = format!("X-Long: {}\r\n", "v".repeat(MAX_LINE_LENGTH - 8));
    sipua_message::Message::parse(request_with("sip:b@example.com", &line).as_bytes()).unwrap();
    let vias: String = (1..MAX_VIAS)
        .map(|i| format!("Via: SIP/2.0/UDP p{i};branch=z9hG4bK{i}\r\n"))
        .collect();
    sipua_message::Message::parse(request_with("sip:b@example.com", &vias).as_bytes()).unwrap();

    // a Request-URI past the limit: 414
    let uri = format!("sip:{}@example.com", "u".repeat(MAX_REQUEST_LINE));
    let text = answer_to(&request_with(&uri, ""));
    assert!(
        text.starts_with("SIP/2.0 414 Request-URI too long\r\n"),
        "{text}"
    );
    // one header line past the limit: 513
    let line = format!("X-Long: {}\r\n", "v".repeat(MAX_LINE_LENGTH));
    let text = answer_to(&request_with("sip:b@example.com", &line));
    assert!(
        text.starts_with("SIP/2.0 513 header line too long\r\n"),
        "{text}"
    );
    // too many Vias, as lines or as the values of one line: 513 with the top Via only
    let vias: String = (1..=MAX_VIAS)
        .map(|i| format!("Via: SIP/2.0/UDP p{i};branch=z9hG4bK{i}\r\n"))
        .collect();
    let text = answer_to(&request_with("sip:b@example.com", &vias));
    assert!(
        text.starts_with("SIP/2.0 513 too many Via headers\r\n"),
        "{text}"
    );
    let values: Vec<String> = (1..=MAX_VIAS)
        .map(|i| format!("SIP/2.0/UDP p{i}"))
        .collect();
    let one = format!("Via: {}\r\n", values.join(","));
    let text = answer_to(&request_with("sip:b@example.com", &one));
    assert!(
        text.starts_with("SIP/2.0 513 too many Via headers\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"),
        "{text}"
    );
}

#[test]
fn an_oversize_datagram_gets_413_when_only_its_body_is_too_large() {
    use sipua_message::ParseError;
    let small = request_with("sip:b@example.com", "");
    let err = ParseError::too_large_for(small.as_bytes(), 1000);
    assert_eq!(err.status_code(), 413);
    let err = ParseError::too_large_for(small.as_bytes(), 100);
    assert_eq!(err.status_code(), 513);
}
