//! Transfer (RFC 3515 REFER, RFC 3891 Replaces, RFC 4488 norefersub) between three user
//! agents on an in-memory network with virtual time: SIP.js's REFER scenarios (blind
//! transfer with NOTIFY progress, refusal) plus what SIP.js lacks (attended transfer that
//! replaces the other call, Refer-Sub: false, the 481/486 answers to a stray Replaces).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::{Header, HeaderName, Uri};
use sipua::{
    EndReason, Error, Invitation, Inviter, InviterOptions, LinkConfig, MemoryNetwork,
    ReferNotification, Referral, Session, SessionDelegate, SessionReferOptions, SessionState,
    UserAgent, UserAgentOptions,
};

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";
const CAROL: &str = "10.0.0.3:5060";

async fn agent(net: &MemoryNetwork, at: &str, user: &str) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen: net.listen(at.parse::<SocketAddr>().unwrap()),
        user: user.into(),
        seed: Some(
            at.bytes()
                .fold(11u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
        ),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

fn uri(user: &str, at: &str) -> Uri {
    format!("sip:{user}@{at}").parse().unwrap()
}

/// What the transferee (Bob) does with a REFER.
#[derive(Clone, Copy, PartialEq)]
enum Follow {
    /// Accept it and call where it says.
    Call,
    /// Refuse it with 403.
    Refuse,
}

/// Bob's session delegate: hands each referral to the test's task.
struct Transferee {
    follow: Follow,
    calls: Arc<Mutex<Vec<Inviter>>>,
    replaces: Arc<Mutex<Option<String>>>,
}

impl SessionDelegate for Transferee {
    fn on_refer(&self, referral: Referral) {
        let (follow, calls, replaces) = (self.follow, self.calls.clone(), self.replaces.clone());
        *replaces.lock().unwrap() = referral.replaces();
        tokio::spawn(async move {
            if follow == Follow::Refuse {
                referral.reject(403).await.unwrap();
                return;
            }
            referral.accept().await.unwrap();
            let call = referral.make_inviter(InviterOptions::default()).unwrap();
            call.invite(Default::default()).await.unwrap();
            calls.lock().unwrap().push(call);
        });
    }
}

struct Three {
    alice: UserAgent,
    bob: UserAgent,
    carol: UserAgent,
    /// Alice's call to Bob, established.
    alice_bob: Inviter,
    /// Bob's side of it.
    bob_side: Invitation,
    /// Calls Bob placed for a transfer.
    bob_calls: Arc<Mutex<Vec<Inviter>>>,
    bob_replaces: Arc<Mutex<Option<String>>>,
}

/// Alice calls Bob, who answers with a delegate that follows REFERs as `follow` says.
async fn three(follow: Option<Follow>) -> Three {
    let net = MemoryNetwork::new(5, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice").await;
    let bob = agent(&net, BOB, "bob").await;
    let carol = agent(&net, CAROL, "carol").await;
    let alice_bob = Inviter::new(&alice, uri("bob", BOB), InviterOptions::default()).unwrap();
    alice_bob.invite(Default::default()).await.unwrap();
    let bob_side = bob.next_invitation().await.unwrap();
    let bob_calls = Arc::new(Mutex::new(Vec::new()));
    let bob_replaces = Arc::new(Mutex::new(None));
    if let Some(follow) = follow {
        bob_side.set_delegate(Arc::new(Transferee {
            follow,
            calls: bob_calls.clone(),
            replaces: bob_replaces.clone(),
        }));
    }
    bob_side.accept(Default::default()).await.unwrap();
    alice_bob.established().await.unwrap();
    Three {
        alice,
        bob,
        carol,
        alice_bob,
        bob_side,
        bob_calls,
        bob_replaces,
    }
}

/// Carol answers her next call.
fn carol_answers(carol: &UserAgent) -> tokio::task::JoinHandle<Invitation> {
    let carol = carol.clone();
    tokio::spawn(async move {
        let inv = carol.next_invitation().await.unwrap();
        inv.accept(Default::default()).await.unwrap();
        inv
    })
}

async fn all_notifications(r: &sipua::Referrer) -> Vec<ReferNotification> {
    let mut got = Vec::new();
    while let Some(n) = r.next_notification().await {
        got.push(n);
    }
    got
}

#[tokio::test(start_paused = true)]
async fn blind_transfer_reports_trying_then_200_and_the_new_call_is_up() {
    let t = three(Some(Follow::Call)).await;
    let carol = carol_answers(&t.carol);
    let referrer = t
        .alice_bob
        .refer(uri("carol", CAROL), SessionReferOptions::default())
        .await
        .unwrap();
    assert_eq!(referrer.response().status(), 202);
    assert!(referrer.subscribed());
    let got = all_notifications(&referrer).await;
    let lines: Vec<(u16, bool)> = got.iter().map(|n| (n.status, n.terminated)).collect();
    assert_eq!(lines, vec![(100, false), (200, true)]);
    // Carol's call came from Bob, naming Alice as the one who referred it
    let carol_side = carol.await.unwrap();
    let by = carol_side
        .request()
        .headers()
        .get(&HeaderName::ReferredBy)
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .expect("Referred-By");
    assert!(by.contains("alice@"), "{by}");
    let bob_carol = t.bob_calls.lock().unwrap()[0].clone();
    assert_eq!(bob_carol.state(), SessionState::Established);
    // the transferor hangs up; the transferred call stays
    t.alice_bob.bye().await.unwrap();
    assert_eq!(t.bob_side.terminated().await, EndReason::RemoteBye);
    assert_eq!(bob_carol.state(), SessionState::Established);
    assert!(t.bob_replaces.lock().unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_busy_transfer_target_is_reported_as_the_outcome() {
    let t = three(Some(Follow::Call)).await;
    let carol = t.carol.clone();
    tokio::spawn(async move {
        let inv = carol.next_invitation().await.unwrap();
        inv.reject(sipua::InvitationRejectOptions {
            status_code: Some(486),
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let referrer = t
        .alice_bob
        .refer(uri("carol", CAROL), SessionReferOptions::default())
        .await
        .unwrap();
    let r = referrer.outcome().await;
    assert!(
        matches!(r, Err(Error::Rejected { status: 486, .. })),
        "{r:?}"
    );
    // the original call is untouched
    assert_eq!(t.alice_bob.state(), SessionState::Established);
}

#[tokio::test(start_paused = true)]
async fn a_refer_nobody_handles_is_declined() {
    let t = three(None).await;
    let r = t
        .alice_bob
        .refer(uri("carol", CAROL), SessionReferOptions::default())
        .await;
    assert!(
        matches!(r, Err(Error::Rejected { status: 603, .. })),
        "{r:?}"
    );
    let t = three(Some(Follow::Refuse)).await;
    let r = t
        .alice_bob
        .refer(uri("carol", CAROL), SessionReferOptions::default())
        .await;
    assert!(
        matches!(r, Err(Error::Rejected { status: 403, .. })),
        "{r:?}"
    );
    assert_eq!(t.alice_bob.state(), SessionState::Established);
}

#[tokio::test(start_paused = true)]
async fn refer_sub_false_gets_no_notifications() {
    let t = three(Some(Follow::Call)).await;
    let carol = carol_answers(&t.carol);
    let referrer = t
        .alice_bob
        .refer(
            uri("carol", CAROL),
            SessionReferOptions {
                no_subscription: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!referrer.subscribed());
    carol.await.unwrap();
    assert!(referrer.next_notification().await.is_none());
    assert_eq!(referrer.outcome().await, Err(Error::SessionTerminated));
}

#[tokio::test(start_paused = true)]
async fn attended_transfer_replaces_the_consultation_call() {
    let t = three(Some(Follow::Call)).await;
    // Alice consults Carol first
    let carol = carol_answers(&t.carol);
    let alice_carol =
        Inviter::new(&t.alice, uri("carol", CAROL), InviterOptions::default()).unwrap();
    alice_carol.invite(Default::default()).await.unwrap();
    alice_carol.established().await.unwrap();
    let carol_side = carol.await.unwrap();
    // then sends Bob to Carol in her place; Carol's new call replaces her call with Alice
    let carol_new = carol_answers(&t.carol);
    let referrer = t
        .alice_bob
        .refer(alice_carol.session(), SessionReferOptions::default())
        .await
        .unwrap();
    referrer.outcome().await.unwrap();
    let d = alice_carol.dialog().unwrap();
    assert_eq!(
        t.bob_replaces.lock().unwrap().clone().unwrap(),
        format!(
            "{};to-tag={};from-tag={}",
            d.call_id, d.remote_tag, d.local_tag
        )
    );
    let carol_new = carol_new.await.unwrap();
    assert_eq!(carol_new.state(), SessionState::Established);
    assert!(carol_new
        .request()
        .headers()
        .get(&HeaderName::Replaces)
        .is_some());

    // Carol ended the replaced call herself; Alice saw the BYE
    assert_eq!(carol_side.terminated().await, EndReason::Replaced);
    assert_eq!(alice_carol.terminated().await, EndReason::RemoteBye);
    t.alice_bob.bye().await.unwrap();
    let bob_carol = t.bob_calls.lock().unwrap()[0].clone();
    assert_eq!(bob_carol.state(), SessionState::Established);
    drop(t.bob);
}

/// Bob calls Carol with a Replaces header of his own making.
async fn invite_with_replaces(t: &Three, value: String) -> Session {
    let call = Inviter::new(
        &t.bob,
        uri("carol", CAROL),
        InviterOptions {
            extra_headers: vec![Header::new(HeaderName::Replaces, value)],
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    call.session().clone()
}

#[tokio::test(start_paused = true)]
async fn replaces_for_no_dialog_gets_481_and_early_only_on_a_confirmed_one_486() {
    let t = three(None).await;
    let s = invite_with_replaces(&t, "nosuchcall@x;to-tag=a;from-tag=b".into()).await;
    let r = s.established().await;
    assert!(
        matches!(r, Err(Error::Rejected { status: 481, .. })),
        "{r:?}"
    );
    // a confirmed call of Carol's, named with early-only
    let carol = carol_answers(&t.carol);
    let alice_carol =
        Inviter::new(&t.alice, uri("carol", CAROL), InviterOptions::default()).unwrap();
    alice_carol.invite(Default::default()).await.unwrap();
    alice_carol.established().await.unwrap();
    let carol_side = carol.await.unwrap();
    let d = alice_carol.dialog().unwrap();
    let value = format!(
        "{};to-tag={};from-tag={};early-only",
        d.call_id, d.remote_tag, d.local_tag
    );
    let s = invite_with_replaces(&t, value).await;
    let r = s.established().await;
    assert!(
        matches!(r, Err(Error::Rejected { status: 486, .. })),
        "{r:?}"
    );
    assert_eq!(carol_side.state(), SessionState::Established);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(alice_carol.state(), SessionState::Established);
}

#[tokio::test(start_paused = true)]
async fn headers_in_the_refer_to_uri_go_into_the_invite_except_unsafe_ones() {
    let t = three(Some(Follow::Call)).await;
    let carol = carol_answers(&t.carol);
    let target: Uri =
        format!("sip:carol@{CAROL}?X-Campaign=42&Subject=transfer&From=%3Csip%3Aevil%40x%3E")
            .parse()
            .unwrap();
    let referrer = t
        .alice_bob
        .refer(target, SessionReferOptions::default())
        .await
        .unwrap();
    referrer.outcome().await.unwrap();
    let carol_side = carol.await.unwrap();
    let r = carol_side.request();
    let value = |n: &str| {
        r.headers()
            .get(&HeaderName::from(n))
            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
    };
    assert_eq!(value("X-Campaign").as_deref(), Some("42"));
    assert_eq!(value("Subject").as_deref(), Some("transfer"));
    assert!(
        r.from().unwrap().uri.to_string().contains("bob@"),
        "From was not taken from the URI"
    );
    assert!(!r.uri().to_string().contains('?'), "{}", r.uri());
}

#[tokio::test(start_paused = true)]
async fn a_refer_that_gets_no_answer_fails_with_a_timeout_and_the_call_goes_on() {
    // every REFER is lost on the way to Bob: after Timer F (64 × T1) Alice's refer() fails
    // with Timeout, not waiting for the call's end, and the call is still up
    let net = MemoryNetwork::new(6, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice").await;
    let bob = agent(&net, BOB, "bob").await;
    let call = Inviter::new(&alice, uri("bob", BOB), InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    net.drop_next(b"REFER ", 100);
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        call.refer(uri("carol", CAROL), SessionReferOptions::default()),
    )
    .await
    .expect("refer() answered once its transaction timed out");
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(32));
    assert_eq!(call.state(), SessionState::Established);
    call.bye().await.unwrap();
}
