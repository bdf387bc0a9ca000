//! Digest challenges answered by the UA core: 401 for REGISTER, 407 for INVITE, wrong
//! passwords bounded, the TU seeing one transaction throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipua_message::header::{Authorization, ProxyAuthorization};
use sipua_message::{Header, HeaderName, Method, Transport};
use sipua_proto::auth::digest::{verify, RequestParts};
use sipua_proto::sim::{LinkConfig, Sim};
use sipua_proto::ua::{Credentials, UaConfig, UaCore, UaEvent};

const ALICE: &str = "192.0.2.1:5060";
const REGISTRAR: &str = "192.0.2.2:5060";

fn alice(password: &str) -> UaCore {
    UaCore::new(UaConfig {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: password.into(),
        }),
        seed: 21,
        ..UaConfig::new(ALICE.parse().unwrap(), Transport::Udp, "alice")
    })
}

fn registrar() -> UaCore {
    let mut cfg = UaConfig {
        seed: 22,
        ..UaConfig::new(REGISTRAR.parse().unwrap(), Transport::Udp, "registrar")
    };
    cfg.capabilities.allow.push(Method::Register);
    UaCore::new(cfg)
}

type Run = (
    Vec<String>,
    usize,
    Option<sipua_proto::endpoint::TransactionId>,
);

fn run(password: &str, method: Method, proxy: bool) -> Run {
    run_n(password, method, proxy, 1)
}

/// Runs `count` requests of Alice, one after the other, against a server that challenges
/// (`proxy`: 407, else 401) and accepts the password "secret". Returns Alice's events, how many
/// requests the server saw, and the id of the first response's transaction.
fn run_n(password: &str, method: Method, proxy: bool, count: usize) -> Run {
    let mut sim: Sim<UaCore> = Sim::new(3, Instant::now(), LinkConfig::default());
    let a = sim.add(ALICE.parse().unwrap(), alice(password));
    sim.add(REGISTRAR.parse().unwrap(), registrar());
    let dest: SocketAddr = REGISTRAR.parse().unwrap();
    let mut alice_events = Vec::new();
    let mut seen = 0;
    let mut first_id = None;
    let mut tu = |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| match (node, ev) {
        (0, UaEvent::Response { id, response, .. }) => {
            first_id.get_or_insert(id);
            alice_events.push(format!("{} {}", response.status(), response.cseq().method));
        }
        (0, other) => alice_events.push(format!("{other:?}")),
        (_, UaEvent::Request { id, request, .. }) => {
            seen += 1;
            let uri = String::from_utf8_lossy(request.uri_bytes()).into_owned();
            let parts = RequestParts {
                method: request.method().as_str(),
                uri: &uri,
                body: request.body(),
            };
            let ok = if proxy {
                request
                    .typed::<ProxyAuthorization>()
                    .and_then(Result::ok)
                    .is_some_and(|c| verify(&c.0, &parts, "secret"))
            } else {
                request
                    .typed::<Authorization>()
                    .and_then(Result::ok)
                    .is_some_and(|c| verify(&c.0, &parts, "secret"))
            };
            let status = match (ok, proxy) {
                (true, _) => 200,
                (false, true) => 407,
                (false, false) => 401,
            };
            let mut resp = ua.response(id, status).unwrap();
            if status != 200 {
                let name = if proxy {
                    HeaderName::ProxyAuthenticate
                } else {
                    HeaderName::WwwAuthenticate
                };
                let nonce = format!("nonce{seen}");
                resp.push_header(Header::new(
                    name,
                    format!("Digest realm=\"example.com\", nonce=\"{nonce}\", qop=\"auth\", algorithm=SHA-256"),
                ))
                .unwrap();
            }
            ua.respond(now, id, resp).unwrap();
        }
        _ => {}
    };
    let mut id = None;
    for _ in 0..count {
        let now = sim.now;
        let target = format!("sip:{REGISTRAR}").parse().unwrap();
        let sent = sim
            .endpoint(a)
            .send_request(now, method.clone(), target, dest, Vec::new(), None)
            .unwrap();
        id.get_or_insert(sent);
        sim.run_until(now + Duration::from_secs(40), &mut tu);
    }
    if let Some(f) = first_id {
        assert_eq!(
            Some(f),
            id,
            "responses to the retried request come under the first transaction's id"
        );
    }
    (alice_events, seen, first_id)
}

#[test]
fn register_answers_401_and_succeeds() {
    let (events, seen, _) = run("secret", Method::Register, false);
    assert_eq!(
        events,
        vec!["200 REGISTER"],
        "the 401 stays inside the core"
    );
    assert_eq!(seen, 2);
}

#[test]
fn wrong_password_gives_up_after_two_tries() {
    let (events, seen, _) = run("wrong", Method::Register, false);
    assert_eq!(events, vec!["401 REGISTER"]);
    assert_eq!(seen, 3, "the first request and two retries");
}

#[test]
fn invite_answers_407_and_the_call_is_up() {
    let (events, seen, _) = run("secret", Method::Invite, true);
    assert_eq!(
        events,
        vec!["100 INVITE", "100 INVITE", "200 INVITE"],
        "{events:?}"
    );
    assert_eq!(seen, 2);
}

#[test]
fn credentials_are_reused_for_the_next_request_to_the_same_server() {
    let (events, seen, _) = run_n("secret", Method::Register, false, 3);
    assert_eq!(events, vec!["200 REGISTER", "200 REGISTER", "200 REGISTER"]);
    assert_eq!(
        seen, 4,
        "one challenge, then every request authorised up front"
    );
}

/// Alice (with `password`) sends `count` MESSAGEs, then INVITEs, to Bob, whose core
/// challenges them itself (`UaConfig::authenticate`), over a link that loses and duplicates.
/// Returns Alice's final statuses and the requests Bob's TU saw.
fn against_authenticating_core(password: &str, count: usize) -> (Vec<u16>, usize) {
    let link = LinkConfig {
        loss: 0.1,
        duplicate: 0.1,
        ..LinkConfig::default()
    };
    let mut sim: Sim<UaCore> = Sim::new(9, Instant::now(), link);
    let a = sim.add(ALICE.parse().unwrap(), alice(password));
    let mut cfg = UaConfig {
        seed: 23,
        authenticate: Some(sipua_proto::ua::DigestServerConfig {
            realm: "example.com".into(),
            users: [("alice".to_owned(), "secret".to_owned())].into(),
            ..Default::default()
        }),
        ..UaConfig::new(REGISTRAR.parse().unwrap(), Transport::Udp, "bob")
    };
    cfg.capabilities.check_request_uri = false;
    sim.add(REGISTRAR.parse().unwrap(), UaCore::new(cfg));
    let dest: SocketAddr = REGISTRAR.parse().unwrap();
    let mut finals = Vec::new();
    let mut seen = 0;
    let mut tu = |node: usize, ua: &mut UaCore, now: Instant, ev: UaEvent| match (node, ev) {
        (0, UaEvent::Response { response, .. }) if response.status() >= 200 => {
            finals.push(response.status());
        }
        (1, UaEvent::Request { id, request, .. }) => {
            seen += 1;
            // the core let it through with Alice's credentials on it
            assert!(request.headers().contains(&HeaderName::Authorization));
            let resp = ua.response(id, 200).unwrap();
            ua.respond(now, id, resp).unwrap();
        }
        _ => {}
    };
    for method in [Method::Message, Method::Invite] {
        for _ in 0..count {
            let now = sim.now;
            let target = format!("sip:bob@{REGISTRAR}").parse().unwrap();
            let body = (method == Method::Message).then(|| {
                (
                    sipua_message::header::MediaType::new("text", "plain"),
                    bytes::Bytes::from_static(b"hello"),
                )
            });
            sim.endpoint(a)
                .send_request(now, method.clone(), target, dest, Vec::new(), body)
                .unwrap();
            sim.run_until(now + Duration::from_secs(40), &mut tu);
        }
    }
    (finals, seen)
}

#[test]
fn a_core_that_authenticates_lets_the_right_password_through_over_a_lossy_link() {
    let (finals, seen) = against_authenticating_core("secret", 3);
    assert_eq!(finals, [200; 6], "{finals:?}");
    assert_eq!(seen, 6, "the TU sees each request once, authenticated");
    // a wrong password never reaches the TU: 401 after the client's retries
    let (finals, seen) = against_authenticating_core("wrong", 2);
    assert_eq!(finals, [401; 4], "{finals:?}");
    assert_eq!(seen, 0);
}
