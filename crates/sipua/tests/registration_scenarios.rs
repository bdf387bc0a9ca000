//! SIP.js's registration scenarios (`test/spec/api/registration.spec.ts`), ported: a
//! `Registerer` against a registrar scripted by hand on the in-memory network, in virtual
//! time (so an hour of refreshes and every timeout pass at once): register and unregister,
//! the automatic refresh before expiry, no response (Timer F), 423 without Min-Expires,
//! 500 without Retry-After (retried with back-off), two registers at once, dispose twice.

use std::net::SocketAddr;
use std::time::Duration;

use sipua::message::{Header, HeaderName, Message, Request, Response};
use sipua::{
    Error, LinkConfig, MemoryNetwork, MemorySocket, Registerer, RegistererOptions, RegistererState,
    UserAgent, UserAgentOptions,
};
use tokio::time::Instant;

const ALICE: &str = "10.0.0.1:5060";
const REGISTRAR: &str = "10.0.0.9:5060";

struct Registrar(MemorySocket);

impl Registrar {
    /// The next REGISTER within an hour of virtual time.
    async fn next(&mut self) -> (Request, SocketAddr) {
        loop {
            let (bytes, from) = tokio::time::timeout(Duration::from_secs(3600), self.0.recv_from())
                .await
                .expect("a REGISTER within the hour")
                .expect("the network is up");
            if let Ok(Message::Request(r)) = Message::parse(&bytes) {
                assert_eq!(r.method().as_str(), "REGISTER");
                return (r, from);
            }
        }
    }

    /// Nothing arrives for `d`.
    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some((b, _))) = tokio::time::timeout(d, self.0.recv_from()).await {
            panic!("unexpected: {}", String::from_utf8_lossy(&b));
        }
    }

    fn answer(&self, req: &Request, to: SocketAddr, status: u16, extra: &[Header]) {
        let r = Response::from_request_with(req, status, Some("reg1"), None, extra);
        self.0.send_to(r.to_bytes(), to).unwrap();
    }

    /// 200 listing the request's Contact with `expires`.
    fn accept(&self, req: &Request, to: SocketAddr, expires: u32) {
        let c = req
            .headers()
            .get(&HeaderName::Contact)
            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
            .unwrap();
        let base = c.split(';').next().unwrap().to_owned();
        let contact = Header::new(HeaderName::Contact, format!("{base};expires={expires}"));
        self.answer(req, to, 200, &[contact]);
    }
}

/// The interval asked for: the Contact's `expires` parameter.
fn expires_of(req: &Request) -> Option<String> {
    let c = req.headers().get(&HeaderName::Contact)?;
    let text = String::from_utf8_lossy(c.value()).into_owned();
    text.split(';')
        .find_map(|p| p.trim().strip_prefix("expires="))
        .map(str::to_owned)
}

async fn setup() -> (UserAgent, Registrar, Registerer) {
    let net = MemoryNetwork::new(2, LinkConfig::default());
    let reg = Registrar(net.socket(REGISTRAR.parse().unwrap()).unwrap());
    let ua = UserAgent::new(UserAgentOptions {
        listen: net.listen(ALICE.parse().unwrap()),
        user: "alice".into(),
        uri: Some(format!("sip:alice@{REGISTRAR}").parse().unwrap()),
        seed: Some(9),
        graceful_shutdown: false,
        ..Default::default()
    });
    ua.start().await.unwrap();
    let r = Registerer::new(&ua, RegistererOptions::default()).unwrap();
    (ua, reg, r)
}

fn spawn_register(
    r: &Registerer,
) -> tokio::task::JoinHandle<Result<sipua::message::Response, Error>> {
    let r = r.clone();
    tokio::spawn(async move { r.register().await })
}

#[tokio::test(start_paused = true)]
async fn register_is_refreshed_before_expiry_for_an_hour_then_unregistered() {
    let (_ua, mut reg, r) = setup().await;
    assert_eq!(r.state(), RegistererState::Initial);
    let task = spawn_register(&r);
    let (first, from) = reg.next().await;
    assert_eq!(expires_of(&first).as_deref(), Some("600"));
    reg.accept(&first, from, 600);
    task.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Registered);
    let mut last = first;
    for _ in 0..6 {
        let at = Instant::now();
        let (refresh, from) = reg.next().await;
        let waited = at.elapsed();
        // SIP.js's 99 %, never later than 5 s before the expiry
        assert!(
            waited >= Duration::from_secs(590) && waited < Duration::from_secs(600),
            "refreshed after {waited:?}"
        );
        assert_eq!(refresh.call_id(), last.call_id());
        assert_eq!(refresh.cseq().seq, last.cseq().seq + 1);
        reg.accept(&refresh, from, 600);
        last = refresh;
    }
    assert_eq!(r.state(), RegistererState::Registered);
    let r2 = r.clone();
    let task = tokio::spawn(async move { r2.unregister(Default::default()).await });
    let (bye, from) = reg.next().await;
    reg.answer(&bye, from, 200, &[]);
    task.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Unregistered);
    // no more refreshes once unregistered
    reg.quiet(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn no_response_times_out_and_is_retried_later() {
    let (_ua, mut reg, r) = setup().await;
    let task = spawn_register(&r);
    let (first, _) = reg.next().await;
    // Timer F: 64·T1 with retransmissions in between
    let start = Instant::now();
    let mut retransmissions = 0;
    while start.elapsed() < Duration::from_secs(31) {
        let (again, _) = reg.next().await;
        assert_eq!(again.cseq().seq, first.cseq().seq);
        retransmissions += 1;
    }
    assert!(retransmissions >= 5, "{retransmissions} retransmissions");
    assert_eq!(task.await.unwrap().err(), Some(Error::Timeout));
    assert_eq!(r.state(), RegistererState::Unregistered);
    // and a new attempt (a new CSeq) after a back-off
    let (retry, from) = reg.next().await;
    assert!(retry.cseq().seq > first.cseq().seq);
    reg.accept(&retry, from, 600);
    let mut states = r.state_change();
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| *s == RegistererState::Registered),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_423_without_min_expires_is_an_error() {
    let (_ua, mut reg, r) = setup().await;
    let task = spawn_register(&r);
    let (req, from) = reg.next().await;
    reg.answer(&req, from, 423, &[]);
    let e = task.await.unwrap().unwrap_err();
    assert!(matches!(e, Error::Rejected { status: 423, .. }), "{e:?}");
    assert_eq!(r.state(), RegistererState::Unregistered);
    // nothing to ask for instead: no retry
    reg.quiet(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_500_without_retry_after_is_retried_with_back_off() {
    let (_ua, mut reg, r) = setup().await;
    let task = spawn_register(&r);
    let (req, from) = reg.next().await;
    reg.answer(&req, from, 500, &[]);
    assert!(matches!(
        task.await.unwrap(),
        Err(Error::Rejected { status: 500, .. })
    ));
    assert_eq!(r.registration().retry_after, None);
    let at = Instant::now();
    let (retry, from) = reg.next().await;
    assert!(
        at.elapsed() >= Duration::from_secs(29),
        "{:?}",
        at.elapsed()
    );
    reg.accept(&retry, from, 600);
    let mut states = r.state_change();
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|s| *s == RegistererState::Registered),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn two_registers_at_once_go_one_after_the_other() {
    let (_ua, mut reg, r) = setup().await;
    let (a, b) = (spawn_register(&r), spawn_register(&r));
    let (first, from) = reg.next().await;
    // the second waits for the first's answer: nothing else is on the wire yet
    reg.quiet(Duration::from_millis(400)).await;
    reg.accept(&first, from, 600);
    let (second, from) = reg.next().await;
    assert_eq!(second.cseq().seq, first.cseq().seq + 1);
    reg.accept(&second, from, 600);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Registered);
}

#[tokio::test(start_paused = true)]
async fn dispose_twice_is_harmless_and_final() {
    let (_ua, mut reg, r) = setup().await;
    let task = spawn_register(&r);
    let (req, from) = reg.next().await;
    reg.accept(&req, from, 600);
    task.await.unwrap().unwrap();
    let r2 = r.clone();
    let disposing = tokio::spawn(async move { r2.dispose().await });
    let (bye, from) = reg.next().await;
    assert!(bye
        .headers()
        .get(&HeaderName::Contact)
        .is_some_and(|h| String::from_utf8_lossy(h.value()).ends_with(";expires=0")));
    reg.answer(&bye, from, 200, &[]);
    disposing.await.unwrap().unwrap();
    assert_eq!(r.state(), RegistererState::Terminated);
    r.dispose().await.unwrap();
    assert_eq!(r.state(), RegistererState::Terminated);
    assert!(matches!(r.register().await, Err(Error::InvalidArgument(_))));
    reg.quiet(Duration::from_secs(60)).await;
}
