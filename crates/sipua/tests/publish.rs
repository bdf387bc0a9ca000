//! `Publisher` against a scripted event state compositor on a loopback UDP socket (RFC 3903):
//! the initial PUBLISH and its entity tag, a modification with SIP-If-Match, the background
//! refresh without a body, 412 starting over with an initial PUBLISH, 423 with Min-Expires,
//! removal with `Expires: 0`, refusals, and unpublishing when the last handle drops.

use std::net::SocketAddr;
use std::time::Duration;

use sipua::message::{Header, HeaderName, Message, Request, Response, Uri};
use sipua::{
    Error, Listen, Publisher, PublisherOptions, PublisherState, UserAgent, UserAgentOptions,
};
use tokio::net::UdpSocket;

const PIDF: &str = "application/pidf+xml";

/// An ESC whose answers the test writes, one PUBLISH at a time.
struct Esc {
    sock: UdpSocket,
}

impl Esc {
    async fn new() -> Esc {
        Esc {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// The next PUBLISH (within `secs`) and where it came from.
    async fn next(&self, secs: f64) -> (Request, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs_f64(secs), self.sock.recv_from(&mut buf))
                .await
                .expect("a PUBLISH arrives")
                .unwrap();
        match Message::parse(&buf[..n]).unwrap() {
            Message::Request(r) => {
                assert_eq!(r.method().as_str(), "PUBLISH");
                (r, from)
            }
            Message::Response(r) => panic!("unexpected response {}", r.status()),
        }
    }

    /// Asserts that nothing arrives within `secs`.
    async fn nothing(&self, secs: f64) {
        let mut buf = vec![0u8; 65536];
        let got =
            tokio::time::timeout(Duration::from_secs_f64(secs), self.sock.recv_from(&mut buf))
                .await;
        assert!(got.is_err(), "nothing should have been sent");
    }

    async fn answer(&self, req: &Request, to: SocketAddr, status: u16, extra: &[Header]) {
        let resp = Response::from_request_with(req, status, Some("esc1"), None, extra);
        self.sock.send_to(&resp.to_bytes(), to).await.unwrap();
    }

    /// Answers 200 with entity tag `etag` for `expires` seconds (RFC 3903 §6 step 8).
    async fn accept(&self, req: &Request, to: SocketAddr, etag: &str, expires: u32) {
        let h = [
            Header::new(HeaderName::SipETag, etag.to_owned()),
            Header::new(HeaderName::Expires, expires.to_string()),
        ];
        self.answer(req, to, 200, &h).await;
    }

    fn target(&self) -> Uri {
        format!("sip:alice@{}", self.addr()).parse().unwrap()
    }
}

/// The value of header `name` as it went over the wire.
fn header(req: &Request, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&req.to_bytes()).into_owned();
    text.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
}

fn body(req: &Request) -> String {
    String::from_utf8_lossy(req.body()).into_owned()
}

/// Asserts `req` is an initial PUBLISH (or modification, with `if_match`) of `content`.
fn assert_publishes(req: &Request, content: &str, expires: u32, if_match: Option<&str>) {
    assert_eq!(header(req, "Event").as_deref(), Some("presence"));
    assert_eq!(header(req, "Expires"), Some(expires.to_string()));
    assert_eq!(header(req, "SIP-If-Match").as_deref(), if_match);
    assert_eq!(header(req, "Content-Type").as_deref(), Some(PIDF));
    assert_eq!(body(req), content);
}

/// Asserts `req` carries no state: a refresh or removal naming `etag`.
fn assert_bodyless(req: &Request, expires: u32, etag: &str) {
    assert_eq!(header(req, "Event").as_deref(), Some("presence"));
    assert_eq!(header(req, "Expires"), Some(expires.to_string()));
    assert_eq!(header(req, "SIP-If-Match").as_deref(), Some(etag));
    assert_eq!(header(req, "Content-Type"), None);
    assert_eq!(header(req, "Content-Length").as_deref(), Some("0"));
    assert!(req.body().is_empty());
}

async fn agent(esc: SocketAddr) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "alice".into(),
        uri: Some(format!("sip:alice@{esc}").parse().unwrap()),
        // the scripted ESC does not answer the unPUBLISH a graceful stop would send
        graceful_shutdown: false,
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

fn pidf(expires: u32) -> PublisherOptions {
    PublisherOptions {
        expires,
        content_type: PIDF.into(),
        ..Default::default()
    }
}

/// `publish(content)` on a task of its own, while the test plays the ESC.
fn spawn_publish(
    p: &Publisher,
    content: &'static str,
) -> tokio::task::JoinHandle<Result<Response, Error>> {
    let p = p.clone();
    tokio::spawn(async move { p.publish(content).await })
}

/// `unpublish()` on a task of its own.
fn spawn_unpublish(p: &Publisher) -> tokio::task::JoinHandle<Result<Response, Error>> {
    let p = p.clone();
    tokio::spawn(async move { p.unpublish().await })
}

/// Waits (at most 2 s) until `p` is in state `s`.
async fn wait_state(p: &Publisher, s: PublisherState) {
    let mut states = p.state_change();
    tokio::time::timeout(Duration::from_secs(2), states.wait_for(|x| *x == s))
        .await
        .expect("state reached in time")
        .unwrap();
}

#[tokio::test]
async fn initial_publish_gets_an_etag_and_a_modification_carries_sip_if_match_and_the_new_body() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    assert_eq!(p.state(), PublisherState::Initial);
    assert_eq!(p.etag(), None);

    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    assert_publishes(&first, "<open/>", 3600, None);
    assert_eq!(first.uri().to_string(), esc.target().to_string());
    assert_eq!(header(&first, "To").unwrap(), format!("<{}>", esc.target()));
    esc.accept(&first, from, "dx200xyz", 3600).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(p.state(), PublisherState::Published);
    assert_eq!(p.etag().as_deref(), Some("dx200xyz"));

    let task = spawn_publish(&p, "<closed/>");
    let (second, from) = esc.next(5.0).await;
    assert_publishes(&second, "<closed/>", 3600, Some("dx200xyz"));
    assert_eq!(second.call_id(), first.call_id());
    assert!(second.cseq().seq > first.cseq().seq);
    esc.accept(&second, from, "kwj449x", 3600).await;
    task.await.unwrap().unwrap();
    assert_eq!(p.state(), PublisherState::Published);
    assert_eq!(p.etag().as_deref(), Some("kwj449x"));

    ua.stop().await;
}

#[tokio::test]
async fn the_refresh_arrives_before_expiry_with_sip_if_match_and_no_body() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    // the ESC grants only 2 s
    esc.accept(&first, from, "e1", 2).await;
    task.await.unwrap().unwrap();
    let granted = tokio::time::Instant::now();

    let (refresh, from) = esc.next(3.0).await;
    let after = granted.elapsed();
    assert!(
        after < Duration::from_secs(2) && after > Duration::from_millis(1000),
        "refreshed after {after:?}"
    );
    assert_bodyless(&refresh, 3600, "e1");
    assert_eq!(refresh.call_id(), first.call_id());
    assert!(refresh.cseq().seq > first.cseq().seq);
    esc.accept(&refresh, from, "e2", 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.etag().as_deref(), Some("e2"));
    assert_eq!(p.state(), PublisherState::Published);

    // the next refresh names the new entity tag
    let (again, from) = esc.next(3.0).await;
    assert_bodyless(&again, 3600, "e2");
    assert!(again.cseq().seq > refresh.cseq().seq);
    esc.accept(&again, from, "e3", 3600).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.etag().as_deref(), Some("e3"));
    ua.stop().await;
}

#[tokio::test]
async fn a_412_to_a_modification_starts_over_with_an_initial_publish_of_the_new_body() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "old", 3600).await;
    task.await.unwrap().unwrap();

    let task = spawn_publish(&p, "<closed/>");
    let (modify, from) = esc.next(5.0).await;
    assert_publishes(&modify, "<closed/>", 3600, Some("old"));
    esc.answer(&modify, from, 412, &[]).await;
    let (fresh, from) = esc.next(5.0).await;
    assert_publishes(&fresh, "<closed/>", 3600, None);
    assert!(fresh.cseq().seq > modify.cseq().seq);
    esc.accept(&fresh, from, "new", 3600).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(p.state(), PublisherState::Published);
    assert_eq!(p.etag().as_deref(), Some("new"));
    ua.stop().await;
}

#[tokio::test]
async fn a_412_to_a_refresh_republishes_the_last_body() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "lost", 1).await;
    task.await.unwrap().unwrap();

    let (refresh, from) = esc.next(2.0).await;
    assert_bodyless(&refresh, 3600, "lost");
    esc.answer(&refresh, from, 412, &[]).await;
    let (fresh, from) = esc.next(5.0).await;
    assert_publishes(&fresh, "<open/>", 3600, None);
    esc.accept(&fresh, from, "found", 3600).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.state(), PublisherState::Published);
    assert_eq!(p.etag().as_deref(), Some("found"));
    ua.stop().await;
}

#[tokio::test]
async fn interval_too_brief_is_asked_again_with_min_expires() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(60)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    assert_publishes(&first, "<open/>", 60, None);
    let min = Header::new(HeaderName::MinExpires, "1800");
    esc.answer(&first, from, 423, &[min]).await;
    let (second, from) = esc.next(5.0).await;
    assert_publishes(&second, "<open/>", 1800, None);
    assert!(second.cseq().seq > first.cseq().seq);
    esc.accept(&second, from, "e1", 1800).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(p.state(), PublisherState::Published);

    // later PUBLISHes keep asking for the minimum
    let task = spawn_publish(&p, "<closed/>");
    let (third, from) = esc.next(5.0).await;
    assert_publishes(&third, "<closed/>", 1800, Some("e1"));
    esc.accept(&third, from, "e2", 1800).await;
    task.await.unwrap().unwrap();
    ua.stop().await;
}

#[tokio::test]
async fn unpublish_sends_expires_0_with_sip_if_match_and_goes_unpublished() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "e1", 3600).await;
    task.await.unwrap().unwrap();

    let task = spawn_unpublish(&p);
    let (remove, from) = esc.next(5.0).await;
    assert_bodyless(&remove, 0, "e1");
    assert!(remove.cseq().seq > first.cseq().seq);
    esc.accept(&remove, from, "e1", 0).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(p.state(), PublisherState::Unpublished);
    assert_eq!(p.etag(), None);

    // nothing left to remove: no request goes out
    assert!(matches!(
        p.unpublish().await,
        Err(Error::InvalidArgument(_))
    ));
    esc.nothing(0.3).await;

    // publishing again is an initial PUBLISH
    let task = spawn_publish(&p, "<open/>");
    let (again, from) = esc.next(5.0).await;
    assert_publishes(&again, "<open/>", 3600, None);
    esc.accept(&again, from, "e9", 3600).await;
    task.await.unwrap().unwrap();
    assert_eq!(p.state(), PublisherState::Published);
    ua.stop().await;
}

#[tokio::test]
async fn a_2xx_with_expires_0_and_a_refusal_leave_it_unpublished() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "e1", 0).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    assert_eq!(p.state(), PublisherState::Unpublished);
    assert_eq!(p.etag(), None);

    let task = spawn_publish(&p, "<open/>");
    let (second, from) = esc.next(5.0).await;
    assert_publishes(&second, "<open/>", 3600, None);
    esc.answer(&second, from, 489, &[]).await;
    match task.await.unwrap() {
        Err(Error::Rejected { status: 489, .. }) => {}
        other => panic!("expected 489, got {other:?}"),
    }
    assert_eq!(p.state(), PublisherState::Unpublished);
    assert_eq!(p.etag(), None);
    // nothing is refreshed after a refusal
    esc.nothing(0.3).await;
    ua.stop().await;
}

#[tokio::test]
async fn dropping_the_last_handle_unpublishes() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let p = Publisher::new(&ua, esc.target(), "presence", pidf(3600)).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "e1", 3600).await;
    task.await.unwrap().unwrap();

    let mut states = p.state_change();
    let clone = p.clone();
    drop(p);
    esc.nothing(0.3).await; // a clone still holds it
    drop(clone);
    let (remove, from) = esc.next(5.0).await;
    assert_bodyless(&remove, 0, "e1");
    assert_eq!(remove.call_id(), first.call_id());
    esc.accept(&remove, from, "e1", 0).await;
    tokio::time::timeout(
        Duration::from_secs(2),
        states.wait_for(|s| *s == PublisherState::Terminated),
    )
    .await
    .unwrap()
    .unwrap();
    ua.stop().await;
}

#[tokio::test]
async fn dispose_without_unpublish_on_drop_only_terminates() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    let options = PublisherOptions {
        unpublish_on_drop: false,
        ..pidf(3600)
    };
    let p = Publisher::new(&ua, esc.target(), "presence", options).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = esc.next(5.0).await;
    esc.accept(&first, from, "e1", 3600).await;
    task.await.unwrap().unwrap();

    p.dispose().await.unwrap();
    assert_eq!(p.state(), PublisherState::Terminated);
    esc.nothing(0.3).await;
    assert!(matches!(
        p.publish("<open/>").await,
        Err(Error::InvalidArgument(_))
    ));
    wait_state(&p, PublisherState::Terminated).await;
    ua.stop().await;
}

#[tokio::test]
async fn publishes_through_via_with_the_target_as_request_uri() {
    let (esc, proxy) = (Esc::new().await, Esc::new().await);
    let ua = agent(esc.addr()).await;
    let target: Uri = "sip:alice@example.invalid".parse().unwrap();
    let options = PublisherOptions {
        via: Some(format!("sip:{}", proxy.addr()).parse().unwrap()),
        extra_headers: vec![Header::new(HeaderName::Subject, "status")],
        ..pidf(3600)
    };
    let p = Publisher::new(&ua, target.clone(), "presence", options).unwrap();
    let task = spawn_publish(&p, "<open/>");
    let (first, from) = proxy.next(5.0).await;
    assert_eq!(first.uri().to_string(), target.to_string());
    assert_eq!(header(&first, "Subject").as_deref(), Some("status"));
    assert_publishes(&first, "<open/>", 3600, None);
    proxy.accept(&first, from, "e1", 3600).await;
    task.await.unwrap().unwrap();
    esc.nothing(0.1).await;
    ua.stop().await;
}

#[tokio::test]
async fn a_bad_event_or_content_type_is_refused_up_front() {
    let esc = Esc::new().await;
    let ua = agent(esc.addr()).await;
    assert!(matches!(
        Publisher::new(&ua, esc.target(), "pres ence", pidf(3600)),
        Err(Error::InvalidArgument(_))
    ));
    let bad = PublisherOptions {
        content_type: "pidf".into(),
        ..Default::default()
    };
    assert!(matches!(
        Publisher::new(&ua, esc.target(), "presence", bad),
        Err(Error::InvalidArgument(_))
    ));
    ua.stop().await;
    assert!(matches!(
        Publisher::new(&ua, esc.target(), "presence", pidf(3600)),
        Err(Error::Stopped)
    ));
}
