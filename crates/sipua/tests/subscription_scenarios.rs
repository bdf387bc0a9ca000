//! SIP.js's subscription scenarios (`test/spec/api/subscription.spec.ts`), ported: Alice's
//! `Subscriber` against a notifier scripted by hand on the in-memory network, in virtual
//! time (so Timer F, Timer N and an hour of refreshes pass at once): no response, no
//! NOTIFY, a 407 challenge, a refusal, NOTIFY before the 2xx, NOTIFYs with a wrong or
//! missing Event or Subscription-State, pending/active/terminated (with and without a
//! reason that asks to subscribe again), out-of-order NOTIFYs, refresh and unsubscribe.

use std::net::SocketAddr;
use std::time::Duration;

use sipua::message::{Header, HeaderName, Message, Request, Response};
use sipua::proto::ua::Credentials;
use sipua::{
    Error, LinkConfig, MemoryNetwork, MemorySocket, Subscriber, SubscriberOptions,
    SubscriptionState, UserAgent, UserAgentOptions,
};

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";

/// The scripted notifier.
struct Bob {
    sock: MemorySocket,
    /// The CSeq of its next NOTIFY.
    cseq: u32,
    /// NOTIFYs sent, for unique branches.
    sent: u32,
}

impl Bob {
    async fn next(&mut self) -> (Message, SocketAddr) {
        let (bytes, from) = tokio::time::timeout(Duration::from_secs(3600), self.sock.recv_from())
            .await
            .expect("a message within the hour")
            .expect("the network is up");
        (Message::parse(&bytes).unwrap(), from)
    }

    async fn next_request(&mut self) -> (Request, SocketAddr) {
        loop {
            if let (Message::Request(r), from) = self.next().await {
                if r.method().as_str() != "ACK" {
                    return (r, from);
                }
            }
        }
    }

    async fn next_response(&mut self) -> Response {
        loop {
            if let (Message::Response(r), _) = self.next().await {
                return r;
            }
        }
    }

    fn answer(&self, req: &Request, to: SocketAddr, status: u16, extra: &[Header]) {
        let tag = req.to_tag().is_none().then_some("bob1");
        let mut headers = vec![Header::new(HeaderName::Contact, format!("<sip:bob@{BOB}>"))];
        headers.extend_from_slice(extra);
        let r = Response::from_request_with(req, status, tag, None, &headers);
        self.sock.send_to(r.to_bytes(), to).unwrap();
    }

    /// Sends a NOTIFY in the subscription `sub` created; `state` None leaves out
    /// Subscription-State, `event` is the Event header's value.
    fn notify(&mut self, sub: &Request, event: &str, state: Option<&str>, cseq: Option<u32>) {
        self.notify_with(sub, event, state, cseq, Some("<presence/>"));
    }

    /// [`Bob::notify`] with `body` as PIDF, or without a body.
    fn notify_with(
        &mut self,
        sub: &Request,
        event: &str,
        state: Option<&str>,
        cseq: Option<u32>,
        body: Option<&str>,
    ) {
        let seq = cseq.unwrap_or_else(|| {
            self.cseq += 1;
            self.cseq
        });
        self.sent += 1;
        let state = state
            .map(|s| format!("Subscription-State: {s}\r\n"))
            .unwrap_or_default();
        let content_type = if body.is_some() {
            "Content-Type: application/pidf+xml\r\n"
        } else {
            ""
        };
        let body = body.unwrap_or_default();
        let msg = format!(
            "NOTIFY sip:alice@{ALICE} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {BOB};branch=z9hG4bK-notify-{}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:bob@{BOB}>;tag=bob1\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {seq} NOTIFY\r\n\
             Contact: <sip:bob@{BOB}>\r\n\
             Event: {event}\r\n\
             {state}\
             {content_type}\
             Content-Length: {}\r\n\r\n{body}",
            self.sent,
            String::from_utf8_lossy(sub.headers().get(&HeaderName::From).unwrap().value()),
            sub.call_id(),
            body.len()
        );
        self.sock.send_to(msg, ALICE.parse().unwrap()).unwrap();
    }

    /// Sends a NOTIFY and returns the status Alice answered it with.
    async fn notify_answered(
        &mut self,
        sub: &Request,
        event: &str,
        state: Option<&str>,
        cseq: Option<u32>,
    ) -> u16 {
        self.notify(sub, event, state, cseq);
        self.next_response().await.status()
    }
}

async fn setup(credentials: bool) -> (UserAgent, Bob) {
    let net = MemoryNetwork::new(1, LinkConfig::default());
    let bob = Bob {
        sock: net.socket(BOB.parse().unwrap()).unwrap(),
        cseq: 0,
        sent: 0,
    };
    let alice = UserAgent::new(UserAgentOptions {
        listen: net.listen(ALICE.parse().unwrap()),
        user: "alice".into(),
        seed: Some(3),
        credentials: credentials.then(|| Credentials {
            username: "alice".into(),
            password: "secret".into(),
        }),
        ..Default::default()
    });
    alice.start().await.unwrap();
    (alice, bob)
}

fn subscriber(alice: &UserAgent, expires: u32) -> Subscriber {
    Subscriber::new(
        alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        "presence",
        SubscriberOptions {
            expires,
            ..Default::default()
        },
    )
    .unwrap()
}

fn spawn_subscribe(s: &Subscriber) -> tokio::task::JoinHandle<Result<(), Error>> {
    let s = s.clone();
    tokio::spawn(async move { s.subscribe().await })
}

fn expires(n: u32) -> Header {
    Header::new(HeaderName::Expires, n.to_string())
}

/// Alice subscribes; Bob answers 200 and NOTIFYs `active`: the usual start.
async fn subscribed(expires_secs: u32) -> (UserAgent, Bob, Subscriber, Request) {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, expires_secs);
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    bob.answer(&sub, from, 200, &[expires(expires_secs)]);
    done.await.unwrap().unwrap();
    let st = format!("active;expires={expires_secs}");
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some(&st), None).await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
    (alice, bob, s, sub)
}

#[tokio::test(start_paused = true)]
async fn no_response_ends_in_timeout() {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let _ = bob.next_request().await;
    assert_eq!(done.await.unwrap(), Err(Error::Timeout));
    assert_eq!(s.state(), SubscriptionState::Terminated);
    // a second subscribe on a terminated subscription is refused, not sent
    assert_eq!(s.subscribe().await, Err(Error::SessionTerminated));
}

#[tokio::test(start_paused = true)]
async fn accepted_but_no_notify_ends_after_timer_n() {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    let started = tokio::time::Instant::now();
    bob.answer(&sub, from, 202, &[expires(3600)]);
    done.await.unwrap().unwrap();
    assert_eq!(s.state(), SubscriptionState::NotifyWait);
    // Timer N (64·T1): the subscription fails and Alice withdraws it in the dialog
    let (unsub, _) = bob.next_request().await;
    assert!(
        started.elapsed() >= Duration::from_secs(32),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(unsub.method().as_str(), "SUBSCRIBE");
    assert_eq!(unsub.to_tag(), Some("bob1"));
    assert!(unsub
        .headers()
        .get(&HeaderName::Expires)
        .is_some_and(|h| h.value() == b"0"));
    assert_eq!(s.state(), SubscriptionState::Terminated);
}

#[tokio::test(start_paused = true)]
async fn a_407_challenge_is_answered_then_accepted() {
    let (alice, mut bob) = setup(true).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let (first, from) = bob.next_request().await;
    let challenge = Header::new(
        HeaderName::ProxyAuthenticate,
        "Digest realm=\"example\", nonce=\"abc123\", qop=\"auth\"",
    );
    bob.answer(&first, from, 407, &[challenge]);
    let (second, from) = bob.next_request().await;
    assert_eq!(second.method().as_str(), "SUBSCRIBE");
    assert!(second
        .headers()
        .get(&HeaderName::ProxyAuthorization)
        .is_some());
    assert_eq!(second.call_id(), first.call_id());
    bob.answer(&second, from, 200, &[expires(3600)]);
    done.await.unwrap().unwrap();
    assert_eq!(
        bob.notify_answered(&second, "presence", Some("active"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_terminates_it() {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    bob.answer(&sub, from, 403, &[]);
    assert!(matches!(
        done.await.unwrap(),
        Err(Error::Rejected { status: 403, .. })
    ));
    assert_eq!(s.state(), SubscriptionState::Terminated);
    assert_eq!(s.termination().unwrap().status, Some(403));
}

#[tokio::test(start_paused = true)]
async fn a_notify_before_the_2xx_is_taken() {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("active;expires=3600"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
    bob.answer(&sub, from, 200, &[expires(3600)]);
    done.await.unwrap().unwrap();
    assert_eq!(s.state(), SubscriptionState::Subscribed);
}

#[tokio::test(start_paused = true)]
async fn bad_notifies_are_refused_and_states_are_followed() {
    let (alice, mut bob) = setup(false).await;
    let s = subscriber(&alice, 3600);
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    bob.answer(&sub, from, 200, &[expires(3600)]);
    done.await.unwrap().unwrap();
    // another package: 489; no Subscription-State: 400; neither changes the state
    assert_eq!(
        bob.notify_answered(&sub, "dialog", Some("active"), None)
            .await,
        489
    );
    assert_eq!(bob.notify_answered(&sub, "presence", None, None).await, 400);
    assert_eq!(s.state(), SubscriptionState::NotifyWait);
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("pending"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Pending);
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("active"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
    // an older NOTIFY (lower CSeq) is out of order: 500 (RFC 3261 §12.2.2)
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("active"), Some(1))
            .await,
        500
    );
    // the notifier ends it without a reason: over, and not subscribed again
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("terminated"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Terminated);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), bob.sock.recv_from())
            .await
            .is_err(),
        "nothing more was sent"
    );
}

#[tokio::test(start_paused = true)]
async fn terminated_with_timeout_subscribes_again_at_once() {
    let (_alice, mut bob, s, sub) = subscribed(3600).await;
    let status = bob
        .notify_answered(&sub, "presence", Some("terminated;reason=timeout"), None)
        .await;
    assert_eq!(status, 200);
    let (again, from) = bob.next_request().await;
    assert_eq!(again.method().as_str(), "SUBSCRIBE");
    assert!(
        again.to_tag().is_none(),
        "a new subscription, outside the old dialog"
    );
    assert_ne!(again.call_id(), sub.call_id());
    bob.answer(&again, from, 200, &[expires(3600)]);
    assert_eq!(
        bob.notify_answered(&again, "presence", Some("active"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
}

#[tokio::test(start_paused = true)]
async fn refreshed_before_expiry_then_unsubscribed() {
    let (_alice, mut bob, s, sub) = subscribed(600).await;
    let start = tokio::time::Instant::now();
    let (refresh, from) = bob.next_request().await;
    let took = start.elapsed();
    assert_eq!(refresh.method().as_str(), "SUBSCRIBE");
    assert_eq!(refresh.call_id(), sub.call_id());
    assert_eq!(refresh.to_tag(), Some("bob1"));
    assert!(
        took >= Duration::from_secs(500) && took < Duration::from_secs(600),
        "refreshed after {took:?} of 600 s"
    );
    bob.answer(&refresh, from, 200, &[expires(600)]);
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("active;expires=600"), None)
            .await,
        200
    );
    // a whole hour: the refreshes keep coming and the subscription holds
    for _ in 0..5 {
        let (r, from) = bob.next_request().await;
        bob.answer(&r, from, 200, &[expires(600)]);
    }
    assert_eq!(s.state(), SubscriptionState::Subscribed);
    let s2 = s.clone();
    let unsub = tokio::spawn(async move { s2.unsubscribe().await });
    let (u, from) = bob.next_request().await;
    assert!(u
        .headers()
        .get(&HeaderName::Expires)
        .is_some_and(|h| h.value() == b"0"));
    assert_eq!(s.state(), SubscriptionState::Terminated);
    bob.answer(&u, from, 200, &[expires(0)]);
    unsub.await.unwrap().unwrap();
    // the final NOTIFY is still answered
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("terminated;reason=timeout"), None)
            .await,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn a_delegate_rejects_a_notify_and_the_state_stays() {
    /// Takes PIDF documents only; an empty body is refused with 415.
    struct PidfOnly;
    impl sipua::SubscriptionDelegate for PidfOnly {
        fn on_notify(&self, n: &sipua::Notification) {
            if n.body().is_empty() || n.content_type().as_deref() != Some("application/pidf+xml") {
                n.reject(415);
            } else {
                n.accept();
            }
        }
    }
    let (alice, mut bob) = setup(false).await;
    let s = Subscriber::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        "presence",
        SubscriberOptions {
            expires: 3600,
            delegate: Some(std::sync::Arc::new(PidfOnly)),
            ..Default::default()
        },
    )
    .unwrap();
    let done = spawn_subscribe(&s);
    let (sub, from) = bob.next_request().await;
    bob.answer(&sub, from, 200, &[expires(3600)]);
    done.await.unwrap().unwrap();
    // Bob's NOTIFYs carry PIDF: accepted, and followed
    assert_eq!(
        bob.notify_answered(&sub, "presence", Some("active"), None)
            .await,
        200
    );
    assert_eq!(s.state(), SubscriptionState::Subscribed);
    // a NOTIFY the delegate refuses: its answer goes back, and the state does not move
    bob.notify_with(
        &sub,
        "presence",
        Some("terminated;reason=noresource"),
        None,
        None,
    );
    let refused = bob.next_response().await.status();
    assert_eq!(refused, 415);
    assert_eq!(s.state(), SubscriptionState::Subscribed);
}
