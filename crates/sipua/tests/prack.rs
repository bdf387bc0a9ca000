//! Reliable provisional responses (RFC 3262) between two user agents on the in-memory
//! network with virtual time: SIP.js's "reliable 183 with the answer" scenario, plus what
//! SIP.js lacks: the reliable 1xx retransmitted until its PRACK, retransmissions absorbed
//! by the caller, the INVITE refused with 504 when no PRACK ever comes, and `rel100`
//! refused towards a caller that does not support 100rel.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::{Header, HeaderName, Response};
use sipua::{
    EndReason, Error, InvitationProgressOptions, Inviter, InviterOptions, LinkConfig,
    MemoryNetwork, SessionDelegate, SessionState, UserAgent, UserAgentOptions,
};

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn agent(net: &MemoryNetwork, at: &str, user: &str) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen: net.listen(addr(at)),
        user: user.into(),
        seed: Some(at.len() as u64 * 7 + user.len() as u64),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

type Log = Arc<Mutex<Vec<String>>>;

/// The network, both agents, and every datagram it carries.
async fn setup() -> (MemoryNetwork, UserAgent, UserAgent, Log) {
    let net = MemoryNetwork::new(3, LinkConfig::default());
    let log: Log = Arc::default();
    let l = log.clone();
    net.drop_when(move |_, _, b| {
        l.lock()
            .unwrap()
            .push(String::from_utf8_lossy(b).into_owned());
        false
    });
    let alice = agent(&net, ALICE, "alice").await;
    let bob = agent(&net, BOB, "bob").await;
    (net, alice, bob, log)
}

fn count(log: &Log, pred: impl Fn(&str) -> bool) -> usize {
    log.lock().unwrap().iter().filter(|m| pred(m)).count()
}

struct Progress(Arc<AtomicUsize>);

impl SessionDelegate for Progress {
    fn on_progress(&self, r: &Response) {
        if r.status() == 183 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn reliable_183() -> InvitationProgressOptions {
    InvitationProgressOptions {
        status_code: Some(183),
        rel100: true,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_reliable_183_with_the_answer_is_pracked_and_the_call_completes() {
    let (_net, alice, bob, log) = setup().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            early_media: true,
            delegate: Some(Arc::new(Progress(seen.clone()))),
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    let invite = String::from_utf8_lossy(&inv.request().to_bytes()).into_owned();
    assert!(invite.contains("Supported: 100rel, timer\r\n"), "{invite}");
    // resolves once Alice's PRACK has come
    let r = inv.progress(reliable_183()).await;
    assert!(r.is_ok(), "{r:?}\n{}", log.lock().unwrap().join("\n----\n"));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    // the early answer is applied from the 183
    assert!(call.remote_description().is_some());
    let msgs = log.lock().unwrap().clone();
    let r183 = msgs
        .iter()
        .find(|m| m.starts_with("SIP/2.0 183"))
        .expect("a 183");
    assert!(r183.contains("Require: 100rel\r\n"), "{r183}");
    let rseq: u32 = r183
        .lines()
        .find_map(|l| l.strip_prefix("RSeq: "))
        .expect("RSeq")
        .trim()
        .parse()
        .unwrap();
    let prack = msgs
        .iter()
        .find(|m| m.starts_with("PRACK "))
        .expect("a PRACK");
    assert!(
        prack.contains(&format!("RAck: {rseq} 1 INVITE\r\n")),
        "{prack}"
    );
    assert_eq!(
        count(&log, |m| m.starts_with("SIP/2.0 200")
            && m.contains(" PRACK\r\n")),
        1
    );

    // a second reliable provisional takes the next RSeq
    inv.progress(reliable_183()).await.unwrap();
    let next = format!("RSeq: {}\r\n", rseq + 1);
    assert_eq!(
        count(&log, |m| m.starts_with("SIP/2.0 183") && m.contains(&next)),
        1
    );
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    call.bye().await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
}

#[tokio::test(start_paused = true)]
async fn a_lost_reliable_183_is_retransmitted_and_its_copies_are_absorbed() {
    let (net, alice, bob, log) = setup().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            delegate: Some(Arc::new(Progress(seen.clone()))),
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    // the first 183 and the first PRACK are lost: Bob retransmits, Alice PRACKs the copy
    net.drop_next(b"SIP/2.0 183", 1);
    net.drop_next(b"PRACK ", 1);
    inv.progress(reliable_183()).await.unwrap();
    assert!(count(&log, |m| m.starts_with("SIP/2.0 183")) >= 3);
    assert!(count(&log, |m| m.starts_with("PRACK ")) >= 2);
    // every copy after the first was absorbed by Alice's core
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    // no more 183s once it was acknowledged
    let before = count(&log, |m| m.starts_with("SIP/2.0 183"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(count(&log, |m| m.starts_with("SIP/2.0 183")), before);
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_a_prack_the_invite_is_refused_with_504_after_64_t1() {
    let (net, alice, bob, _log) = setup().await;
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    net.drop_when(|_, _, b| b.starts_with(b"PRACK "));
    let started = tokio::time::Instant::now();
    let r = inv.progress(reliable_183()).await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(32));
    assert_eq!(inv.state(), SessionState::Terminated);
    assert!(matches!(
        call.terminated().await,
        EndReason::Rejected { status: 504, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn rel100_is_refused_when_the_caller_does_not_support_it() {
    let (_net, alice, bob, log) = setup().await;
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            // a caller that supports something else, not 100rel
            extra_headers: vec![Header::new(HeaderName::Supported, "timer")],
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    assert!(matches!(
        inv.progress(reliable_183()).await,
        Err(Error::InvalidArgument(_))
    ));
    // an unreliable 183 is still fine
    inv.progress(InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(count(&log, |m| m.contains("RSeq:")), 0);
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
}

/// A late offer: Alice's INVITE has none and Bob's reliable 183 carries his. Alice answers
/// in the PRACK (RFC 3262 §5: her core holds the PRACK back for her session's answer); a
/// second reliable 183 repeating the offer is PRACKed bare; Bob's 2xx repeats his offer and
/// Alice's ACK goes bare; each side ends with the other's description applied.
#[tokio::test(start_paused = true)]
async fn a_late_offer_in_a_reliable_183_is_answered_in_the_prack() {
    let (_net, alice, bob, log) = setup().await;
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            invite_without_sdp: true,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    // resolves once the PRACK has come: Bob has Alice's answer then
    inv.progress(reliable_183()).await.unwrap();
    let dump = || log.lock().unwrap().join("\n----\n");
    assert!(inv.remote_description().is_some(), "{}", dump());
    assert!(call.remote_description().is_some(), "{}", dump());
    // a second reliable 183 repeats the offer: the core PRACKs it, bare (were it held for an
    // answer nobody makes, Bob would wait, then refuse the INVITE with 504)
    let again = tokio::time::timeout(Duration::from_secs(5), inv.progress(reliable_183())).await;
    assert!(matches!(again, Ok(Ok(()))), "{again:?}\n{}", dump());
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = log.lock().unwrap().clone();
    let body_of = |start: &str| {
        let m = msgs.iter().find(|m| m.starts_with(start)).expect(start);
        m.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned()
    };
    let (offer, answer) = (body_of("SIP/2.0 183"), body_of("PRACK "));
    assert!(offer.starts_with("v=0"), "{}", dump());
    assert!(answer.starts_with("v=0"), "the PRACK answers\n{}", dump());
    let ok = msgs
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n"))
        .expect("the 2xx");
    assert!(
        ok.ends_with(&offer),
        "the 2xx repeats the offer\n{}",
        dump()
    );
    assert_eq!(
        body_of("ACK "),
        "",
        "nothing is owed in the ACK\n{}",
        dump()
    );
    // two PRACKs: the first with the answer, the second bare
    let pracks: Vec<String> = msgs
        .iter()
        .filter(|m| m.starts_with("PRACK "))
        .cloned()
        .collect();
    assert_eq!(pracks.len(), 2, "{}", dump());
    assert!(pracks[1].ends_with("\r\n\r\n"), "{}", pracks[1]);
    assert_eq!(inv.state(), SessionState::Established);
    call.bye().await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
}
