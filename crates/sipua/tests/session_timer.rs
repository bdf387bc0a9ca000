//! Session timers (RFC 4028) between two user agents on the in-memory network with virtual
//! time: the refresher refreshes at half the interval (UPDATE, since the peer allows it), the
//! other side keeps the call while refreshes come and ends it with BYE when they stop, an
//! interval below the callee's minimum gets 422, and a caller without timer support leaves
//! the refreshing to the callee. SIP.js has no session timers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::{
    EndReason, Error, Inviter, LinkConfig, MemoryNetwork, SessionState, SessionTimerOptions,
    UserAgent, UserAgentOptions,
};

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";

type Log = Arc<Mutex<Vec<String>>>;

async fn agent(
    net: &MemoryNetwork,
    at: &str,
    user: &str,
    timers: Option<SessionTimerOptions>,
) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen: net.listen(at.parse::<SocketAddr>().unwrap()),
        user: user.into(),
        seed: Some(at.len() as u64 * 17 + user.len() as u64),
        session_timers: timers,
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

fn timers(session_expires: u32) -> Option<SessionTimerOptions> {
    Some(SessionTimerOptions {
        session_expires,
        min_se: 90,
    })
}

/// The network (logging every datagram; `drop` decides losses) and both agents.
async fn setup(
    alice: Option<SessionTimerOptions>,
    bob: Option<SessionTimerOptions>,
    drop: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
) -> (UserAgent, UserAgent, Log) {
    let net = MemoryNetwork::new(9, LinkConfig::default());
    let log: Log = Arc::default();
    let l = log.clone();
    net.drop_when(move |_, _, b| {
        l.lock()
            .unwrap()
            .push(String::from_utf8_lossy(b).into_owned());
        drop(b)
    });
    (
        agent(&net, ALICE, "alice", alice).await,
        agent(&net, BOB, "bob", bob).await,
        log,
    )
}

fn find(log: &Log, pred: impl Fn(&str) -> bool) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|m| pred(m))
        .cloned()
        .collect()
}

async fn connect(alice: &UserAgent, bob: &UserAgent) -> (Inviter, sipua::Invitation) {
    let call = Inviter::new(
        alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        Default::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    (call, inv)
}

#[tokio::test(start_paused = true)]
async fn the_caller_refreshes_at_half_the_interval_and_the_call_lives_on() {
    let (alice, bob, log) = setup(timers(120), timers(1800), |_| false).await;
    let (call, inv) = connect(&alice, &bob).await;
    let invite = find(&log, |m| m.starts_with("INVITE "));
    assert!(
        invite[0].contains("Session-Expires: 120\r\n"),
        "{}",
        invite[0]
    );
    assert!(
        invite[0].contains("Supported: 100rel, timer\r\n"),
        "{}",
        invite[0]
    );
    let ok = find(&log, |m| {
        m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n")
    });
    assert!(
        ok[0].contains("Session-Expires: 120;refresher=uac\r\n"),
        "{}",
        ok[0]
    );
    assert!(ok[0].contains("Require: timer\r\n"), "{}", ok[0]);

    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(find(&log, |m| m.starts_with("UPDATE ")).is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let updates = find(&log, |m| m.starts_with("UPDATE "));
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].contains("Session-Expires: 120;refresher=uac\r\n"),
        "{}",
        updates[0]
    );
    // five minutes on: refreshed every minute, still up on both sides
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(find(&log, |m| m.starts_with("UPDATE ")).len() >= 5);
    assert_eq!(call.state(), SessionState::Established);
    assert_eq!(inv.state(), SessionState::Established);
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn when_refreshes_stop_the_callee_ends_the_call() {
    // every refresh from Alice is lost
    let (alice, bob, _log) = setup(timers(120), timers(1800), |b| b.starts_with(b"UPDATE ")).await;
    let (call, inv) = connect(&alice, &bob).await;
    let started = tokio::time::Instant::now();
    let why = tokio::time::timeout(Duration::from_secs(200), inv.terminated())
        .await
        .expect("Bob ends the call");
    assert_eq!(why, EndReason::SessionExpired);
    // 120 s less min(32 s, 40 s)
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(87) && after <= Duration::from_secs(90),
        "{after:?}"
    );
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
}

#[tokio::test(start_paused = true)]
async fn an_interval_below_the_callees_minimum_gets_422_and_the_caller_asks_again() {
    let (alice, bob, log) = setup(
        Some(SessionTimerOptions {
            session_expires: 60,
            min_se: 60,
        }),
        timers(1800),
        |_| false,
    )
    .await;
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        Default::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    assert!(matches!(
        inv.accept(Default::default()).await,
        Err(Error::Rejected { status: 422, .. })
    ));
    let r422 = find(&log, |m| m.starts_with("SIP/2.0 422"));
    assert!(r422[0].contains("Min-SE: 90\r\n"), "{}", r422[0]);
    // RFC 4028 §7.4: Alice sends the INVITE again with Bob's minimum, and Bob takes it
    let again = bob.next_invitation().await.unwrap();
    let text = String::from_utf8_lossy(&again.request().to_bytes()).into_owned();
    assert!(text.contains("Session-Expires: 90\r\n"), "{text}");
    again.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    assert_eq!(find(&log, |m| m.starts_with("INVITE ")).len(), 2);
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_caller_without_timers_leaves_the_refreshing_to_the_callee() {
    let (alice, bob, log) = setup(None, timers(120), |_| false).await;
    let (call, _inv) = connect(&alice, &bob).await;
    let invite = find(&log, |m| m.starts_with("INVITE "));
    assert!(!invite[0].contains("Session-Expires"), "{}", invite[0]);
    let ok = find(&log, |m| {
        m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n")
    });
    assert!(
        ok[0].contains("Session-Expires: 120;refresher=uas\r\n"),
        "{}",
        ok[0]
    );
    assert!(!ok[0].contains("Require: timer"), "{}", ok[0]);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let updates = find(&log, |m| m.starts_with("UPDATE "));
    assert_eq!(updates.len(), 1, "Bob refreshes");
    assert!(updates[0].contains("From: <sip:bob@"), "{}", updates[0]);
    assert_eq!(call.state(), SessionState::Established);
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hold_reinvite_from_a_caller_without_timers_does_not_hand_it_the_refreshing() {
    // a SIP.js-like caller (no RFC 4028) puts the call on hold: Bob must go on refreshing,
    // or the call would expire after one interval with nobody refreshing it
    let (alice, bob, log) = setup(None, timers(120), |_| false).await;
    let (call, inv) = connect(&alice, &bob).await;
    call.session()
        .invite(sipua::SessionInviteOptions {
            session_description_handler_options: Some(
                sipua::SessionDescriptionHandlerOptions::hold(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    let ok = find(&log, |m| {
        m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n")
    });
    assert!(
        ok[1].contains("Session-Expires: 120;refresher=uas\r\n"),
        "{}",
        ok[1]
    );
    // three intervals later the call is up, refreshed by Bob all along
    tokio::time::sleep(Duration::from_secs(360)).await;
    assert_eq!(inv.state(), SessionState::Established);
    assert_eq!(call.state(), SessionState::Established);
    let updates = find(&log, |m| m.starts_with("UPDATE "));
    assert!(updates.len() >= 5, "{} refreshes", updates.len());
    assert!(updates.iter().all(|u| u.contains("From: <sip:bob@")));
    call.bye().await.unwrap();
}
