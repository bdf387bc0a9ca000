//! `SimpleUser` and `SessionManager` (SIP.js `simple-user/`, `session-manager/`) with real
//! user agents on 127.0.0.1 UDP: calls answered, declined and refused when busy, INFO DTMF,
//! hold and unhold (the SDP direction the peer receives), hangup from either side, pages,
//! two calls at once, registration (with retries) against a scripted registrar, and OPTIONS
//! pings that find a dead server, then recover: re-REGISTER, re-INVITE, `on_server_connect`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::{Header, HeaderName, Message, Request, Response, Uri};
use sipua::{
    Error, InviterOptions, Listen, Session, SessionManager, SessionManagerDelegate,
    SessionManagerOptions, SimpleUser, SimpleUserDelegate, SimpleUserOptions, UserAgent,
    UserAgentOptions,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(5);
/// The duration of the INFO DTMF the library sends.
const INFO_DTMF: Duration = Duration::from_millis(160);

/// One delegate callback.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Created,
    Received,
    Answered,
    Hangup,
    Hold(bool),
    Dtmf(char, Duration),
    Message(String, String),
    Registered,
    Unregistered,
    Connect,
    Disconnect(Option<Error>),
}

/// The callbacks as they come, with a bounded wait for each.
struct Events<T>(mpsc::Receiver<T>);

impl<T: std::fmt::Debug> Events<T> {
    async fn next_within(&mut self, wait: Duration) -> T {
        timeout(wait, self.0.recv())
            .await
            .unwrap_or_else(|_| panic!("no delegate callback within {wait:?}"))
            .expect("the delegate is alive")
    }

    async fn next(&mut self) -> T {
        self.next_within(WAIT).await
    }

    /// No callback for `d`.
    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(e)) = timeout(d, self.0.recv()).await {
            panic!("unexpected callback {e:?}");
        }
    }
}

struct Recorder(mpsc::Sender<Ev>);

impl Recorder {
    fn push(&self, e: Ev) {
        self.0
            .try_send(e)
            .expect("the test keeps up with the callbacks");
    }
}

impl SimpleUserDelegate for Recorder {
    fn on_call_created(&self) {
        self.push(Ev::Created);
    }
    fn on_call_received(&self) {
        self.push(Ev::Received);
    }
    fn on_call_answered(&self) {
        self.push(Ev::Answered);
    }
    fn on_call_hangup(&self) {
        self.push(Ev::Hangup);
    }
    fn on_call_hold(&self, held: bool) {
        self.push(Ev::Hold(held));
    }
    fn on_call_dtmf_received(&self, tone: char, duration: Duration) {
        self.push(Ev::Dtmf(tone, duration));
    }
    fn on_message_received(&self, from: &Uri, text: &str) {
        self.push(Ev::Message(from.to_string(), text.to_owned()));
    }
    fn on_registered(&self) {
        self.push(Ev::Registered);
    }
    fn on_unregistered(&self) {
        self.push(Ev::Unregistered);
    }
    fn on_server_connect(&self) {
        self.push(Ev::Connect);
    }
    fn on_server_disconnect(&self, error: Option<&Error>) {
        self.push(Ev::Disconnect(error.cloned()));
    }
}

/// The manager's callbacks, with the session they name.
struct ManagerRecorder(mpsc::Sender<(Ev, Option<Session>)>);

impl ManagerRecorder {
    fn push(&self, e: Ev, s: Option<&Session>) {
        self.0
            .try_send((e, s.cloned()))
            .expect("the test keeps up with the callbacks");
    }
}

impl SessionManagerDelegate for ManagerRecorder {
    fn on_call_created(&self, s: &Session) {
        self.push(Ev::Created, Some(s));
    }
    fn on_call_received(&self, s: &Session) {
        self.push(Ev::Received, Some(s));
    }
    fn on_call_answered(&self, s: &Session) {
        self.push(Ev::Answered, Some(s));
    }
    fn on_call_hangup(&self, s: &Session) {
        self.push(Ev::Hangup, Some(s));
    }
    fn on_call_hold(&self, s: &Session, held: bool) {
        self.push(Ev::Hold(held), Some(s));
    }
    fn on_call_dtmf_received(&self, s: &Session, tone: char, duration: Duration) {
        self.push(Ev::Dtmf(tone, duration), Some(s));
    }
    fn on_message_received(&self, from: &Uri, text: &str) {
        self.push(Ev::Message(from.to_string(), text.to_owned()), None);
    }
    fn on_registered(&self) {
        self.push(Ev::Registered, None);
    }
    fn on_unregistered(&self) {
        self.push(Ev::Unregistered, None);
    }
    fn on_server_connect(&self) {
        self.push(Ev::Connect, None);
    }
    fn on_server_disconnect(&self, error: Option<&Error>) {
        self.push(Ev::Disconnect(error.cloned()), None);
    }
}

fn agent_options(user: &str) -> UserAgentOptions {
    UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: user.into(),
        ..Default::default()
    }
}

/// A connected `SimpleUser` sending DTMF by INFO, and its callbacks (the connect consumed).
async fn phone(user: &str, tweak: impl FnOnce(&mut SimpleUserOptions)) -> (SimpleUser, Events<Ev>) {
    let (tx, rx) = mpsc::channel(64);
    let mut o = SimpleUserOptions {
        user_agent_options: agent_options(user),
        delegate: Some(Arc::new(Recorder(tx))),
        send_dtmf_using_session_description_handler: false,
        ..Default::default()
    };
    tweak(&mut o);
    let phone = SimpleUser::new(o);
    phone.connect().await.unwrap();
    let mut events = Events(rx);
    assert_eq!(events.next().await, Ev::Connect);
    assert!(phone.is_connected());
    (phone, events)
}

/// A connected `SessionManager` and its callbacks (the connect consumed).
async fn manager(
    user: &str,
    tweak: impl FnOnce(&mut SessionManagerOptions),
) -> (SessionManager, Events<(Ev, Option<Session>)>) {
    let (tx, rx) = mpsc::channel(64);
    let mut o = SessionManagerOptions {
        user_agent_options: agent_options(user),
        delegate: Some(Arc::new(ManagerRecorder(tx))),
        send_dtmf_using_session_description_handler: false,
        ..Default::default()
    };
    tweak(&mut o);
    let m = SessionManager::new(o);
    m.connect().await.unwrap();
    let mut events = Events(rx);
    assert_eq!(events.next().await, (Ev::Connect, None));
    (m, events)
}

fn address(ua: &UserAgent, user: &str) -> Uri {
    format!("sip:{user}@{}", ua.local_addr().unwrap())
        .parse()
        .unwrap()
}

/// The direction attribute of the peer's last description, as this side received it.
fn direction(s: &Session) -> String {
    let d = s.remote_description().expect("a remote description");
    let text = String::from_utf8_lossy(&d.body).into_owned();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("a=")
                .filter(|a| ["sendrecv", "sendonly", "recvonly", "inactive"].contains(a))
        })
        .unwrap_or("sendrecv")
        .to_owned()
}

async fn established(s: &Session) -> Result<(), Error> {
    timeout(WAIT, s.established())
        .await
        .expect("the call is answered or refused in time")
}

#[tokio::test]
async fn two_simple_users_call_answer_send_dtmf_hold_unhold_and_hang_up() {
    let (alice, mut a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    assert!(alice.session().is_none());
    assert_eq!(alice.answer().await, Err(Error::NoSession));
    assert_eq!(alice.hangup().await, Err(Error::NoSession));
    assert_eq!(alice.send_dtmf('1').await, Err(Error::NoSession));

    let call = alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    assert_eq!(a.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Received);
    assert_eq!(alice.session().as_ref(), Some(&call));
    assert_eq!(
        alice.answer().await,
        Err(Error::NoSession),
        "an outgoing call is not there to answer"
    );
    bob.answer().await.unwrap();
    assert_eq!(b.next().await, Ev::Answered);
    established(&call).await.unwrap();
    assert_eq!(a.next().await, Ev::Answered);
    assert!(
        matches!(bob.answer().await, Err(Error::StateTransition { .. })),
        "answering twice is a state error"
    );

    // DTMF by INFO, both ways
    alice.send_dtmf('5').await.unwrap();
    assert_eq!(b.next().await, Ev::Dtmf('5', INFO_DTMF));
    bob.send_dtmf('#').await.unwrap();
    assert_eq!(a.next().await, Ev::Dtmf('#', INFO_DTMF));
    assert!(matches!(
        alice.send_dtmf('x').await,
        Err(Error::InvalidArgument(_))
    ));

    // hold: Bob receives a sendonly offer and answers recvonly; unhold restores sendrecv
    let bobs_call = bob.session().unwrap();
    assert_eq!(direction(&bobs_call), "sendrecv");
    alice.hold().await.unwrap();
    assert_eq!(a.next().await, Ev::Hold(true));
    assert!(alice.is_held());
    assert!(!bob.is_held());
    assert_eq!(direction(&bobs_call), "sendonly");
    assert_eq!(direction(&call), "recvonly");
    alice.hold().await.unwrap(); // already held: nothing sent, nothing told
    alice.unhold().await.unwrap();
    assert_eq!(a.next().await, Ev::Hold(false));
    assert!(!alice.is_held());
    assert_eq!(direction(&bobs_call), "sendrecv");

    // hangup reaches both delegates and frees the line
    alice.hangup().await.unwrap();
    assert_eq!(a.next().await, Ev::Hangup);
    assert_eq!(b.next().await, Ev::Hangup);
    assert!(alice.session().is_none());
    assert!(bob.session().is_none());
    assert_eq!(bob.hold().await, Err(Error::NoSession));
    a.quiet(Duration::from_millis(200)).await;
    b.quiet(Duration::from_millis(10)).await;

    alice.disconnect().await.unwrap();
    assert_eq!(a.next().await, Ev::Disconnect(None));
    assert!(!alice.is_connected());
    bob.disconnect().await.unwrap();
}

#[tokio::test]
async fn the_callee_hangs_up_and_both_sides_hear_it() {
    let (alice, mut a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    let call = alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    assert_eq!(b.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Received);
    bob.answer().await.unwrap();
    established(&call).await.unwrap();
    bob.hangup().await.unwrap();
    assert_eq!(b.next().await, Ev::Answered);
    assert_eq!(b.next().await, Ev::Hangup);
    assert_eq!(a.next().await, Ev::Created);
    assert_eq!(a.next().await, Ev::Answered);
    assert_eq!(a.next().await, Ev::Hangup);
    assert_eq!(call.end_reason(), Some(sipua::EndReason::RemoteBye));
}

#[tokio::test]
async fn decline_reaches_the_caller_as_603() {
    let (alice, mut a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    let call = alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    assert_eq!(b.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Received);
    bob.decline().await.unwrap();
    match established(&call).await {
        Err(Error::Rejected { status: 603, .. }) => {}
        other => panic!("expected a 603 refusal, got {other:?}"),
    }
    assert_eq!(a.next().await, Ev::Created);
    assert_eq!(a.next().await, Ev::Hangup);
    assert_eq!(b.next().await, Ev::Hangup);
    assert!(alice.session().is_none());
    assert!(bob.session().is_none());
    assert_eq!(bob.decline().await, Err(Error::NoSession));
}

#[tokio::test]
async fn a_busy_simple_user_refuses_a_second_call_with_486_and_cannot_call_out() {
    let (alice, mut a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    let (carol, mut c) = phone("carol", |_| {}).await;
    let first = alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    assert_eq!(b.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Received);
    bob.answer().await.unwrap();
    established(&first).await.unwrap();
    assert_eq!(b.next().await, Ev::Answered);

    let second = carol.call(address(bob.user_agent(), "bob")).await.unwrap();
    match established(&second).await {
        Err(Error::Rejected { status: 486, .. }) => {}
        other => panic!("expected 486 Busy Here, got {other:?}"),
    }
    assert_eq!(c.next().await, Ev::Created);
    assert_eq!(c.next().await, Ev::Hangup);
    b.quiet(Duration::from_millis(300)).await; // Bob never heard of Carol's call

    assert_eq!(
        bob.call(address(carol.user_agent(), "carol")).await,
        Err(Error::TooManySessions { limit: 1 })
    );
    assert_eq!(
        bob.session().map(|s| s.state()),
        Some(sipua::SessionState::Established)
    );
    assert_eq!(a.next().await, Ev::Created);
    assert_eq!(a.next().await, Ev::Answered);
    a.quiet(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_message_arrives_at_on_message_received() {
    let (alice, _a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    alice
        .message(address(bob.user_agent(), "bob"), "Hello, Bob")
        .await
        .unwrap();
    match b.next().await {
        Ev::Message(from, text) => {
            assert!(from.starts_with("sip:alice@127.0.0.1"), "{from}");
            assert_eq!(text, "Hello, Bob");
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_manager_runs_two_calls_at_once_and_refuses_a_third() {
    let (m, mut me) = manager("alice", |_| {}).await;
    let (bob1, mut e1) = phone("bob", |_| {}).await;
    let (bob2, mut e2) = phone("bob", |_| {}).await;
    let s1 = m
        .call(address(bob1.user_agent(), "bob"), InviterOptions::default())
        .await
        .unwrap();
    let s2 = m
        .call(address(bob2.user_agent(), "bob"), InviterOptions::default())
        .await
        .unwrap();
    assert_ne!(s1, s2);
    assert_eq!(me.next().await, (Ev::Created, Some(s1.clone())));
    assert_eq!(me.next().await, (Ev::Created, Some(s2.clone())));
    for (bob, e) in [(&bob1, &mut e1), (&bob2, &mut e2)] {
        assert_eq!(e.next().await, Ev::Created);
        assert_eq!(e.next().await, Ev::Received);
        bob.answer().await.unwrap();
        assert_eq!(e.next().await, Ev::Answered);
    }
    established(&s1).await.unwrap();
    established(&s2).await.unwrap();
    let mut answered = vec![me.next().await, me.next().await];
    answered.sort_by_key(|(_, s)| s.as_ref() != Some(&s1));
    assert_eq!(
        answered,
        [
            (Ev::Answered, Some(s1.clone())),
            (Ev::Answered, Some(s2.clone()))
        ]
    );
    assert_eq!(m.managed_sessions(), [s1.clone(), s2.clone()]);

    // a third call, either way, is over the limit of two
    assert_eq!(
        m.call(address(bob1.user_agent(), "bob"), InviterOptions::default())
            .await,
        Err(Error::TooManySessions { limit: 2 })
    );
    let (carol, mut c) = phone("carol", |_| {}).await;
    let third = carol.call(address(m.user_agent(), "alice")).await.unwrap();
    match established(&third).await {
        Err(Error::Rejected { status: 486, .. }) => {}
        other => panic!("expected 486 Busy Here, got {other:?}"),
    }
    assert_eq!(c.next().await, Ev::Created);
    assert_eq!(c.next().await, Ev::Hangup);

    // each call on its own: hold, DTMF both ways
    m.hold(&s1).await.unwrap();
    assert_eq!(me.next().await, (Ev::Hold(true), Some(s1.clone())));
    assert!(m.is_held(&s1));
    assert!(!m.is_held(&s2));
    assert_eq!(direction(&bob1.session().unwrap()), "sendonly");
    assert_eq!(direction(&bob2.session().unwrap()), "sendrecv");
    bob2.send_dtmf('7').await.unwrap();
    assert_eq!(
        me.next().await,
        (Ev::Dtmf('7', INFO_DTMF), Some(s2.clone()))
    );
    m.send_dtmf(&s1, '3').await.unwrap();
    assert_eq!(e1.next().await, Ev::Dtmf('3', INFO_DTMF));
    assert!(matches!(
        m.answer(&s1).await,
        Err(Error::InvalidArgument(_))
    ));

    // hanging up one leaves the other
    m.hangup(&s1).await.unwrap();
    assert_eq!(me.next().await, (Ev::Hangup, Some(s1.clone())));
    assert_eq!(e1.next().await, Ev::Hangup);
    assert_eq!(m.managed_sessions(), vec![s2.clone()]);
    assert_eq!(m.hold(&s1).await, Err(Error::SessionTerminated));
    assert!(!m.is_held(&s1));

    // disconnecting hangs up the rest
    m.disconnect().await.unwrap();
    assert_eq!(me.next().await, (Ev::Hangup, Some(s2.clone())));
    assert_eq!(me.next().await, (Ev::Disconnect(None), None));
    assert_eq!(e2.next().await, Ev::Hangup);
    assert!(m.managed_sessions().is_empty());
}

/// A registrar (and server) the test scripts: one request at a time.
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

    /// The next REGISTER within `wait`.
    async fn next(&self, wait: Duration) -> (Request, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        let (n, from) = timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .expect("a REGISTER arrives")
            .unwrap();
        match Message::parse(&buf[..n]).unwrap() {
            Message::Request(r) if r.method().as_str() == "REGISTER" => (r, from),
            other => panic!("expected a REGISTER, got {other:?}"),
        }
    }

    /// Nothing arrives for `d`.
    async fn quiet(&self, d: Duration) {
        let mut buf = vec![0u8; 65536];
        if let Ok(r) = timeout(d, self.sock.recv_from(&mut buf)).await {
            let (n, _) = r.unwrap();
            panic!("unexpected request: {}", String::from_utf8_lossy(&buf[..n]));
        }
    }

    async fn answer(&self, req: &Request, to: SocketAddr, status: u16) {
        let resp = Response::from_request_with(req, status, Some("reg7"), None, &[]);
        self.sock.send_to(&resp.to_bytes(), to).await.unwrap();
    }

    async fn accept(&self, req: &Request, to: SocketAddr) {
        self.sock
            .send_to(&accepted(req).to_bytes(), to)
            .await
            .unwrap();
    }
}

/// The Contact header of a request, as sent.
fn contact(req: &Request) -> String {
    let text = String::from_utf8_lossy(&req.to_bytes()).into_owned();
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            (name.trim().eq_ignore_ascii_case("contact") || name.trim() == "m")
                .then(|| value.trim().to_owned())
        })
        .expect("a Contact")
}

/// 200 to a REGISTER, listing its Contact with the interval it asked for.
fn accepted(req: &Request) -> Response {
    let c = contact(req);
    let (base, params) = c.split_once(';').unwrap_or((&c, ""));
    let expires = params
        .split(';')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap_or("600");
    let header = Header::new(HeaderName::Contact, format!("{base};expires={expires}"));
    Response::from_request_with(req, 200, Some("reg7"), None, &[header])
}

#[tokio::test]
async fn registers_unregisters_and_unregisters_again_on_disconnect() {
    let reg = Registrar::new().await;
    let aor: Uri = format!("sip:alice@{}", reg.addr()).parse().unwrap();
    let (alice, mut a) = phone("alice", |o| o.aor = Some(aor)).await;

    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.register().await }
    });
    let (req, from) = reg.next(WAIT).await;
    assert!(contact(&req).ends_with(";expires=600"), "{}", contact(&req));
    reg.accept(&req, from).await;
    task.await.unwrap().unwrap();
    assert_eq!(a.next().await, Ev::Registered);

    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.unregister().await }
    });
    let (req, from) = reg.next(WAIT).await;
    assert!(contact(&req).ends_with(";expires=0"), "{}", contact(&req));
    reg.answer(&req, from, 200).await;
    task.await.unwrap().unwrap();
    assert_eq!(a.next().await, Ev::Unregistered);

    // registered again, then disconnect removes the binding before stopping
    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.register().await }
    });
    let (req, from) = reg.next(WAIT).await;
    reg.accept(&req, from).await;
    task.await.unwrap().unwrap();
    assert_eq!(a.next().await, Ev::Registered);
    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.disconnect().await }
    });
    let (req, from) = reg.next(WAIT).await;
    assert!(contact(&req).ends_with(";expires=0"), "{}", contact(&req));
    reg.answer(&req, from, 200).await;
    task.await.unwrap().unwrap();
    assert_eq!(a.next().await, Ev::Unregistered);
    assert_eq!(a.next().await, Ev::Disconnect(None));
}

#[tokio::test]
async fn a_refused_registration_is_retried_after_one_to_two_intervals_until_it_holds() {
    let reg = Registrar::new().await;
    let aor: Uri = format!("sip:alice@{}", reg.addr()).parse().unwrap();
    let interval = Duration::from_millis(300);
    let (alice, mut a) = phone("alice", |o| {
        o.aor = Some(aor);
        o.registration_retry = true;
        o.registration_retry_interval = interval;
    })
    .await;
    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.register().await }
    });
    let (req, from) = reg.next(WAIT).await;
    reg.answer(&req, from, 403).await;
    let refused = Instant::now();
    match task.await.unwrap() {
        Err(Error::Rejected { status: 403, .. }) => {}
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(a.next().await, Ev::Unregistered);

    let (again, from) = reg.next(WAIT).await;
    let waited = refused.elapsed();
    assert!(
        waited >= interval - Duration::from_millis(20),
        "retried after {waited:?}"
    );
    assert!(
        waited <= interval * 2 + Duration::from_secs(1),
        "retried after {waited:?}"
    );
    assert_eq!(again.call_id(), req.call_id());
    assert!(again.cseq().seq > req.cseq().seq);
    reg.accept(&again, from).await;
    assert_eq!(a.next().await, Ev::Registered);
    reg.quiet(interval * 3).await; // it holds: no more retries

    let task = tokio::spawn({
        let alice = alice.clone();
        async move { alice.unregister().await }
    });
    let (req, from) = reg.next(WAIT).await;
    reg.answer(&req, from, 200).await;
    task.await.unwrap().unwrap();
    assert_eq!(a.next().await, Ev::Unregistered);
    reg.quiet(interval * 3).await; // unregistered on purpose: no retry
}

/// A server that answers OPTIONS and REGISTER with 200 while it is alive, and counts them.
struct Server {
    addr: SocketAddr,
    alive: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn spawn() -> Server {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (alive, seen) = (alive.clone(), seen.clone());
            async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                        return;
                    };
                    let Ok(Message::Request(req)) = Message::parse(&buf[..n]) else {
                        continue;
                    };
                    let method = req.method().as_str().to_owned();
                    seen.lock().unwrap().push(method.clone());
                    if !alive.load(Ordering::SeqCst) {
                        continue;
                    }
                    let resp = match method.as_str() {
                        "REGISTER" => accepted(&req),
                        _ => Response::from_request_with(&req, 200, Some("srv1"), None, &[]),
                    };
                    let _ = sock.send_to(&resp.to_bytes(), from).await;
                }
            }
        });
        Server {
            addr,
            alive,
            seen,
            task,
        }
    }

    fn count(&self, method: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == method)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn options_pings_find_a_dead_server_and_recovery_re_registers_and_re_invites() {
    let server = Server::spawn().await;
    let aor: Uri = format!("sip:alice@{}", server.addr).parse().unwrap();
    let every = Duration::from_millis(400);
    let (m, mut me) = manager("alice", |o| {
        o.aor = Some(aor);
        o.options_ping_interval = Some(every);
    })
    .await;
    m.register().await.unwrap();
    assert_eq!(me.next().await, (Ev::Registered, None));

    // a call to a peer that does not go through the server
    let (bob, mut b) = phone("bob", |_| {}).await;
    let call = m
        .call(address(bob.user_agent(), "bob"), InviterOptions::default())
        .await
        .unwrap();
    assert_eq!(b.next().await, Ev::Created);
    assert_eq!(b.next().await, Ev::Received);
    bob.answer().await.unwrap();
    established(&call).await.unwrap();
    assert_eq!(me.next().await, (Ev::Created, Some(call.clone())));
    assert_eq!(me.next().await, (Ev::Answered, Some(call.clone())));
    let bobs_call = bob.session().unwrap();
    let offer_before = bobs_call.remote_description().unwrap();

    // the server answers: pings go out, nothing is reported
    me.quiet(every * 3).await;
    assert!(server.count("OPTIONS") >= 2, "{:?}", server.seen);
    assert!(m.is_connected());

    // the server goes silent: a ping times out
    server.alive.store(false, Ordering::SeqCst);
    assert_eq!(
        me.next().await,
        (Ev::Disconnect(Some(Error::Timeout)), None)
    );
    assert!(!m.is_connected());
    let registers = server.count("REGISTER");

    // it answers again: registered again, the call re-INVITEd, connected again
    server.alive.store(true, Ordering::SeqCst);
    assert_eq!(
        me.next_within(Duration::from_secs(10)).await,
        (Ev::Connect, None)
    );
    assert!(m.is_connected());
    assert!(
        server.count("REGISTER") > registers,
        "recovery registers again"
    );
    timeout(WAIT, async {
        while bobs_call.remote_description().as_ref() == Some(&offer_before) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("Bob receives a re-INVITE with a new offer");
    assert_eq!(direction(&bobs_call), "sendrecv");
    assert_eq!(call.state(), sipua::SessionState::Established);

    m.disconnect().await.unwrap();
    bob.disconnect().await.unwrap();
}

#[tokio::test]
async fn pings_need_something_to_ping() {
    let m = SessionManager::new(SessionManagerOptions {
        user_agent_options: agent_options("alice"),
        options_ping_interval: Some(Duration::from_secs(1)),
        ..Default::default()
    });
    assert!(matches!(m.connect().await, Err(Error::InvalidArgument(_))));
    assert!(!m.is_connected());
    assert!(matches!(m.register().await, Err(Error::Stopped)));
}

/// Waits (bounded) until `events` has produced every one of `wanted`, in any order.
async fn saw_all(events: &mut Events<Ev>, wanted: &[Ev]) {
    let mut seen = Vec::new();
    while !wanted.iter().all(|w| seen.contains(w)) {
        seen.push(events.next().await);
    }
}

#[tokio::test]
async fn a_blind_transfer_moves_the_call_and_the_transferee_follows_it() {
    let (alice, mut a) = phone("alice", |_| {}).await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    let (carol, mut c) = phone("carol", |_| {}).await;
    alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    saw_all(&mut b, &[Ev::Created, Ev::Received]).await;
    bob.answer().await.unwrap();
    saw_all(&mut a, &[Ev::Created, Ev::Answered]).await;
    // Carol answers whoever calls
    let carol2 = carol.clone();
    let answering = tokio::spawn(async move {
        saw_all(&mut c, &[Ev::Created, Ev::Received]).await;
        carol2.answer().await.unwrap();
        c
    });
    // Alice sends Bob to Carol: resolved once Carol answered Bob, then Alice hangs up
    timeout(WAIT, alice.transfer(address(carol.user_agent(), "carol")))
        .await
        .expect("the transfer ends in time")
        .unwrap();
    saw_all(&mut a, &[Ev::Hangup]).await;
    assert!(alice.session().is_none());
    // Bob's phone followed the REFER: a new call (answered by Carol), the old one gone
    saw_all(&mut b, &[Ev::Created, Ev::Answered, Ev::Hangup]).await;
    let mut c = answering.await.unwrap();
    saw_all(&mut c, &[Ev::Answered]).await;
    let bob_call = bob.session().expect("Bob's call to Carol");
    assert_eq!(bob_call.state(), sipua::SessionState::Established);
    // a transfer the target declines is reported, and the call stays
    let (dave, mut d) = phone("dave", |_| {}).await;
    let dave_uri = address(dave.user_agent(), "dave");
    let declining = tokio::spawn(async move {
        saw_all(&mut d, &[Ev::Received]).await;
        dave.decline().await.unwrap();
        dave
    });
    let r = timeout(WAIT, bob.transfer(dave_uri)).await;
    assert!(
        matches!(r, Ok(Err(Error::Rejected { status: 603, .. }))),
        "a declined transfer fails: {r:?}"
    );
    declining.await.unwrap();
    assert_eq!(bob_call.state(), sipua::SessionState::Established);
}

#[tokio::test]
async fn dtmf_falls_back_to_info_when_the_media_handler_cannot_send_it() {
    // the default media handler (FixedSdp) sends no RTP, so no RFC 4733 either
    let (alice, mut a) = phone("alice", |o| {
        o.send_dtmf_using_session_description_handler = true;
    })
    .await;
    let (bob, mut b) = phone("bob", |_| {}).await;
    alice.call(address(bob.user_agent(), "bob")).await.unwrap();
    saw_all(&mut b, &[Ev::Created, Ev::Received]).await;
    bob.answer().await.unwrap();
    saw_all(&mut a, &[Ev::Created, Ev::Answered]).await;
    alice.send_dtmf('7').await.unwrap();
    saw_all(&mut b, &[Ev::Dtmf('7', INFO_DTMF)]).await;
    alice.hangup().await.unwrap();
}
