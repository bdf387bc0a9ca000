//! `Registerer` against a scripted registrar on a loopback UDP socket: digest challenge and
//! answer, one Call-ID with rising CSeq, refresh before expiry, 423 with Min-Expires, 503 with
//! Retry-After, 3xx to another registrar, `Contact: *`, `+sip.instance`/`reg-id` and GRUUs
//! (RFC 3261 §10.2, RFC 5626 §4.2, RFC 5627), and unregistering when the last handle drops.

use std::net::SocketAddr;
use std::time::Duration;

use sipua::message::header::{Authorization, Contact};
use sipua::message::{Header, HeaderName, Message, Request, Response};
use sipua::proto::auth::digest::{verify, RequestParts};
use sipua::proto::ua::Credentials;
use sipua::{
    Error, Listen, Registerer, RegistererOptions, RegistererState, UserAgent, UserAgentOptions,
};
use tokio::net::UdpSocket;

/// A registrar whose answers the test writes, one REGISTER at a time.
struct Registrar {
    sock: UdpSocket,
}

impl Registrar {
    async fn new() -> Registrar {
        Registrar {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// The next REGISTER (within `secs`) and where it came from.
    async fn next(&self, secs: f64) -> (Request, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs_f64(secs), self.sock.recv_from(&mut buf))
                .await
                .expect("a REGISTER arrives")
                .unwrap();
        match Message::parse(&buf[..n]).unwrap() {
            Message::Request(r) => {
                assert_eq!(r.method().as_str(), "REGISTER");
                (r, from)
            }
            Message::Response(r) => panic!("unexpected response {}", r.status()),
        }
    }

    async fn answer(&self, req: &Request, to: SocketAddr, status: u16, extra: &[Header]) {
        let resp = Response::from_request_with(req, status, Some("reg7"), None, extra);
        self.sock.send_to(&resp.to_bytes(), to).await.unwrap();
    }

    /// Answers 200 listing `req`'s Contact with `expires` (as registrars do).
    async fn accept(&self, req: &Request, to: SocketAddr, expires: u32, more: &str) {
        let contact = contact(req);
        let base = contact.split(';').next().unwrap().to_owned();
        let c = Header::new(
            HeaderName::Contact,
            format!("{base};expires={expires}{more}"),
        );
        self.answer(req, to, 200, &[c]).await;
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&req.to_bytes()).into_owned();
    text.lines()
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
}

fn contact(req: &Request) -> String {
    header(req, "Contact").expect("a Contact")
}

async fn agent(registrar: SocketAddr, password: Option<&str>) -> UserAgent {
    agent_with(registrar, password, false).await
}

/// An agent whose `stop()` unregisters first when `graceful` (the scripted registrar of
/// most tests does not answer that last REGISTER).
async fn agent_with(registrar: SocketAddr, password: Option<&str>, graceful: bool) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        graceful_shutdown: graceful,
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "alice".into(),
        uri: Some(format!("sip:alice@{registrar}").parse().unwrap()),
        credentials: password.map(|p| Credentials {
            username: "alice".into(),
            password: p.into(),
        }),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

/// `register()` on a task of its own, while the test plays the registrar.
fn spawn_register(
    r: &Registerer,
) -> tokio::task::JoinHandle<Result<sipua::message::Response, Error>> {
    let r = r.clone();
    tokio::spawn(async move { r.register().await })
}

/// `unregister(all)` on a task of its own.
fn spawn_unregister(
    r: &Registerer,
    all: bool,
) -> tokio::task::JoinHandle<Result<sipua::message::Response, Error>> {
    let r = r.clone();
    tokio::spawn(async move {
        r.unregister(if all {
            sipua::RegistererUnregisterOptions::all()
        } else {
            Default::default()
        })
        .await
    })
}

#[tokio::test]
async fn registers_with_digest_refreshes_before_expiry_and_unregisters() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), Some("secret")).await;
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    assert_eq!(r.state(), RegistererState::Initial);
    let task = spawn_register(&r);
    // 401 first
    let (first, from) = reg.next(5.0).await;
    assert!(
        contact(&first).ends_with(";expires=600"),
        "{}",
        contact(&first)
    );
    assert_eq!(
        header(&first, "To").unwrap(),
        format!("<sip:alice@{}>", reg.addr())
    );
    let challenge = Header::new(
        HeaderName::WwwAuthenticate,
        "Digest realm=\"sipua.test\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5",
    );
    reg.answer(&first, from, 401, &[challenge]).await;
    // then the same REGISTER with credentials, same Call-ID, next CSeq
    let (second, from) = reg.next(5.0).await;
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.cseq().seq, first.cseq().seq + 1);
    let auth = second
        .typed::<Authorization>()
        .expect("Authorization")
        .unwrap();
    let uri = second.uri().to_string();
    let parts = RequestParts {
        method: "REGISTER",
        uri: &uri,
        body: &[],
    };
    assert!(verify(&auth.0, &parts, "secret"), "digest does not verify");
    // grant a short interval: the refresh comes well before it runs out
    reg.accept(&second, from, 6, "").await;
    let resp = task.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(r.state(), RegistererState::Registered);
    assert_eq!(r.registration().expires, Some(6));
    assert_eq!(r.registration().contacts.len(), 1);

    let started = tokio::time::Instant::now();
    let (refresh, from) = reg.next(7.0).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refreshed too late"
    );
    assert_eq!(refresh.call_id(), first.call_id());
    assert!(refresh.cseq().seq > second.cseq().seq);
    assert!(
        refresh.typed::<Authorization>().is_some(),
        "the refresh reuses the credentials"
    );
    reg.accept(&refresh, from, 600, "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.registration().expires, Some(600));

    let un = spawn_unregister(&r, false);
    let (bye, from) = reg.next(5.0).await;
    assert!(contact(&bye).ends_with(";expires=0"), "{}", contact(&bye));
    assert!(bye.cseq().seq > refresh.cseq().seq);
    reg.answer(&bye, from, 200, &[]).await;
    un.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Unregistered);
    ua.stop().await;
}

#[tokio::test]
async fn interval_too_brief_is_asked_again_with_min_expires() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let r = Registerer::new(
        &ua,
        RegistererOptions {
            expires: 60,
            ..Default::default()
        },
    )
    .unwrap();
    let task = spawn_register(&r);
    let (first, from) = reg.next(5.0).await;
    let min = Header::new(HeaderName::MinExpires, "1800");
    reg.answer(&first, from, 423, &[min]).await;
    let (second, from) = reg.next(5.0).await;
    assert!(
        contact(&second).contains(";expires=1800"),
        "{}",
        contact(&second)
    );
    reg.accept(&second, from, 1800, "").await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(r.registration().expires, Some(1800));
    ua.stop().await;
}

#[tokio::test]
async fn a_503_with_retry_after_is_reported_and_retried_after_that_delay() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    let task = spawn_register(&r);
    let (first, from) = reg.next(5.0).await;
    let retry = Header::new(HeaderName::RetryAfter, "1");
    reg.answer(&first, from, 503, &[retry]).await;
    match task.await.unwrap() {
        // the response itself comes with the error, its Retry-After readable
        Err(Error::Rejected {
            status: 503,
            response: Some(response),
            ..
        }) => {
            let after = response
                .typed::<sipua::message::header::RetryAfter>()
                .and_then(Result::ok);
            assert_eq!(after.map(|a| a.delta), Some(1));
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(r.state(), RegistererState::Unregistered);
    assert_eq!(r.registration().retry_after, Some(1));
    let started = tokio::time::Instant::now();
    let (again, from) = reg.next(5.0).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}"
    );
    reg.accept(&again, from, 600, "").await;
    let mut states = r.state_change();
    tokio::time::timeout(
        Duration::from_secs(2),
        states.wait_for(|s| *s == RegistererState::Registered),
    )
    .await
    .unwrap()
    .unwrap();
    ua.stop().await;
}

#[tokio::test]
async fn a_redirect_is_followed_to_the_registrar_it_names() {
    let (a, b) = (Registrar::new().await, Registrar::new().await);
    let ua = agent(a.addr(), None).await;
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    let task = spawn_register(&r);
    let (first, from) = a.next(5.0).await;
    let elsewhere = Header::new(HeaderName::Contact, format!("<sip:{}>", b.addr()));
    a.answer(&first, from, 302, &[elsewhere]).await;
    let (second, from) = b.next(5.0).await;
    assert_eq!(second.uri().to_string(), format!("sip:{}", b.addr()));
    b.accept(&second, from, 600, "").await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    ua.stop().await;
}

#[tokio::test]
async fn instance_and_reg_id_are_sent_and_gruus_learned() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let id = "urn:uuid:00000000-0000-1000-8000-000a95a0e128";
    let r = Registerer::new(
        &ua,
        RegistererOptions {
            instance_id: Some(id.into()),
            reg_id: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    let c = contact(&req);
    assert!(c.contains(&format!("+sip.instance=\"<{id}>\"")), "{c}");
    assert!(c.contains("reg-id=1"), "{c}");
    let supported = header(&req, "Supported").unwrap_or_default();
    assert!(
        supported.contains("gruu") && supported.contains("outbound"),
        "{supported}"
    );
    let base = c.split(';').next().unwrap();
    let granted = Header::new(
        HeaderName::Contact,
        format!(
            "{base};expires=600;+sip.instance=\"<{id}>\";reg-id=1;\
             pub-gruu=\"sip:alice@example.com;gr=urn:uuid:00000000-0000-1000-8000-000a95a0e128\";\
             temp-gruu=\"sip:tgruu.7hs==jd7vnzga5w7fajsc7-ajd6fabz0f8g5@example.com;gr\""
        ),
    );
    reg.answer(&req, from, 200, &[granted]).await;
    task.await.unwrap().unwrap();
    let g = r.registration();
    assert_eq!(
        g.public_gruu.as_deref(),
        Some("sip:alice@example.com;gr=urn:uuid:00000000-0000-1000-8000-000a95a0e128")
    );
    assert!(g.temporary_gruu.unwrap().starts_with("sip:tgruu."));
    ua.stop().await;
}

#[tokio::test]
async fn an_outbound_registration_puts_ob_in_the_contact_of_later_invites() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let before = dialog_contact(&ua, &reg).await;
    assert!(!before.contains(";ob"), "{before}");
    let r = Registerer::new(
        &ua,
        RegistererOptions {
            instance_id: Some("urn:uuid:00000000-0000-1000-8000-000a95a0e128".into()),
            reg_id: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    // the REGISTER names its flow by reg-id; `ob` is for dialogs (RFC 5626 §4.2, §4.3)
    assert!(!contact(&req).contains(";ob"), "{}", contact(&req));
    reg.accept(&req, from, 600, "").await;
    task.await.unwrap().unwrap();
    let after = dialog_contact(&ua, &reg).await;
    assert!(after.contains(";ob>"), "{after}");
    ua.stop().await;
}

/// The Contact of an INVITE `ua` sends to the registrar's address (as to its proxy).
async fn dialog_contact(ua: &UserAgent, reg: &Registrar) -> String {
    let call = sipua::Inviter::new(
        ua,
        format!("sip:bob@{}", reg.addr()).parse().unwrap(),
        Default::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), reg.sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let Message::Request(invite) = Message::parse(&buf[..n]).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(invite.method().as_str(), "INVITE");
    let c = contact(&invite);
    let _ = call.cancel(Default::default()).await;
    c
}

#[tokio::test]
async fn unregister_all_sends_contact_star_and_dropping_the_last_handle_unregisters() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    reg.accept(&req, from, 600, "").await;
    task.await.unwrap().unwrap();

    let task = spawn_unregister(&r, true);
    let (all, from) = reg.next(5.0).await;
    assert_eq!(contact(&all), "*");
    assert_eq!(header(&all, "Expires").as_deref(), Some("0"));
    assert!(matches!(
        all.typed::<Contact>().unwrap().unwrap(),
        Contact::Star
    ));
    reg.answer(&all, from, 200, &[]).await;
    task.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Unregistered);

    // register again, then drop every handle: the binding is removed
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    reg.accept(&req, from, 600, "").await;
    task.await.unwrap().unwrap();
    let mut states = r.state_change();
    drop(r);
    let (bye, from) = reg.next(5.0).await;
    assert!(contact(&bye).ends_with(";expires=0"), "{}", contact(&bye));
    reg.answer(&bye, from, 200, &[]).await;
    tokio::time::timeout(
        Duration::from_secs(2),
        states.wait_for(|s| *s == RegistererState::Terminated),
    )
    .await
    .unwrap()
    .unwrap();
    ua.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_unregisters_first() {
    let reg = Registrar::new().await;
    let ua = agent_with(reg.addr(), None, true).await;
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    reg.accept(&req, from, 600, "").await;
    task.await.unwrap().unwrap();
    // stop() while the registerer is still held: the binding goes before the transport
    let stopping = {
        let ua = ua.clone();
        tokio::spawn(async move { ua.stop().await })
    };
    let (bye, from) = reg.next(5.0).await;
    assert!(contact(&bye).ends_with(";expires=0"), "{}", contact(&bye));
    reg.answer(&bye, from, 200, &[]).await;
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stop() returns")
        .unwrap();
    assert_eq!(r.state(), RegistererState::Unregistered);
    assert_eq!(ua.state(), sipua::UserAgentState::Stopped);
}

#[tokio::test]
async fn several_contacts_are_bound_and_removed_together() {
    let reg = Registrar::new().await;
    let ua = agent(reg.addr(), None).await;
    let extra: sipua::message::Uri = "sip:alice@192.0.2.7:5070;transport=tcp".parse().unwrap();
    let r = Registerer::new(
        &ua,
        RegistererOptions {
            extra_contacts: vec![extra.clone()],
            ..Default::default()
        },
    )
    .unwrap();
    let task = spawn_register(&r);
    let (req, from) = reg.next(5.0).await;
    let contacts: Vec<String> = req
        .headers()
        .get_all(&HeaderName::Contact)
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .collect();
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert!(
        contacts[0].contains("alice@127.0.0.1"),
        "ours first: {contacts:?}"
    );
    assert_eq!(contacts[1], format!("<{extra}>;expires=600"));
    let both: Vec<Header> = contacts
        .iter()
        .map(|c| Header::new(HeaderName::Contact, c.clone()))
        .collect();
    reg.answer(&req, from, 200, &both).await;
    task.await.unwrap().unwrap();
    assert_eq!(r.registration().contacts.len(), 2);
    assert_eq!(r.registration().expires, Some(600));

    let task = spawn_unregister(&r, false);
    let (bye, from) = reg.next(5.0).await;
    let gone: Vec<String> = bye
        .headers()
        .get_all(&HeaderName::Contact)
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone.iter().all(|c| c.ends_with(";expires=0")), "{gone:?}");
    reg.answer(&bye, from, 200, &[]).await;
    task.await.unwrap().unwrap();
    ua.stop().await;
}
