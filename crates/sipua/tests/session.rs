//! SIP.js's session scenarios (`test/spec/api/session.spec.ts` and
//! `session-in-dialog.spec.ts`), ported: two user agents on an in-memory network with virtual
//! time (tokio's paused clock), with and without an offer in the INVITE.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sipua::message::{Header, HeaderName, Response};
use sipua::{
    EndReason, Error, Invitation, InvitationProgressOptions, InvitationRejectOptions, Inviter,
    InviterCancelOptions, InviterOptions, LinkConfig, MemoryNetwork, RequestOptions, Session,
    SessionDelegate, SessionInviteOptions, SessionState, UserAgent, UserAgentOptions,
};

const ALICE: &str = "10.0.0.1:5060";
const BOB: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn agent(
    net: &MemoryNetwork,
    at: &str,
    user: &str,
    tweak: impl FnOnce(&mut UserAgentOptions),
) -> UserAgent {
    let mut o = UserAgentOptions {
        listen: net.listen(addr(at)),
        user: user.into(),
        seed: Some(
            at.bytes()
                .chain(user.bytes())
                .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
        ),
        ..Default::default()
    };
    tweak(&mut o);
    let ua = UserAgent::new(o);
    ua.start().await.unwrap();
    ua
}

struct Pair {
    net: MemoryNetwork,
    alice: UserAgent,
    bob: UserAgent,
}

async fn pair(seed: u64) -> Pair {
    let net = MemoryNetwork::new(seed, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice", |_| {}).await;
    let bob = agent(&net, BOB, "bob", |_| {}).await;
    Pair { net, alice, bob }
}

fn bob_uri() -> sipua::message::Uri {
    format!("sip:bob@{BOB}").parse().unwrap()
}

fn inviter(p: &Pair, with_sdp: bool) -> Inviter {
    Inviter::new(
        &p.alice,
        bob_uri(),
        InviterOptions {
            invite_without_sdp: !with_sdp,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Alice calls Bob with `options` and the INVITE is sent.
async fn invite_with(p: &Pair, options: InviterOptions) -> Inviter {
    let call = Inviter::new(&p.alice, bob_uri(), options).unwrap();
    call.invite(Default::default()).await.unwrap();
    call
}

async fn invitation(p: &Pair) -> Invitation {
    p.bob.next_invitation().await.expect("an invitation")
}

/// A whole call: INVITE (with or without offer), 180, 200, ACK, BYE from either side.
async fn basic_call(with_sdp: bool, bye_from_alice: bool) {
    let p = pair(1).await;
    let call = inviter(&p, with_sdp);
    assert!(call.request().is_none(), "nothing sent yet");
    call.invite(Default::default()).await.unwrap();
    assert_eq!(call.state(), SessionState::Establishing);
    let inv = invitation(&p).await;
    // Inviter::request is the INVITE Bob got
    let sent = call.request().expect("the INVITE as sent");
    assert_eq!(sent.method(), inv.request().method());
    assert_eq!(sent.call_id(), inv.request().call_id());
    assert_eq!(sent.body(), inv.request().body());
    assert_eq!(inv.request().body().is_empty(), !with_sdp);
    inv.progress(Default::default()).await.unwrap();
    assert_eq!(inv.state(), SessionState::Establishing);
    inv.accept(Default::default()).await.unwrap();
    assert_eq!(inv.state(), SessionState::Established);
    call.established().await.unwrap();
    // both sides hold the other's description: offer/answer went through INVITE/200 or 200/ACK
    let mut bob_state = inv.state_change();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(call.remote_description().is_some());
    assert!(
        inv.remote_description().is_some(),
        "answer in the ACK reached Bob"
    );
    assert_eq!(
        call.dialog().unwrap().call_id,
        inv.dialog().unwrap().call_id
    );
    // SIP.js's session id (Call-ID and the caller's tag) is the same on both sides
    let id = inv.id().expect("a callee knows its id at once");
    assert!(id.starts_with(inv.request().call_id()), "{id}");
    assert_eq!(call.id().as_deref(), Some(id.as_str()));
    if bye_from_alice {
        let resp = call.bye().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(call.end_reason(), Some(EndReason::LocalBye));
        assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    } else {
        let resp = inv.bye().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(call.terminated().await, EndReason::RemoteBye);
    }
    bob_state
        .wait_for(|s| *s == SessionState::Terminated)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn call_with_offer_alice_hangs_up() {
    basic_call(true, true).await;
}

#[tokio::test(start_paused = true)]
async fn call_without_offer_alice_hangs_up() {
    basic_call(false, true).await;
}

#[tokio::test(start_paused = true)]
async fn call_with_offer_bob_hangs_up() {
    basic_call(true, false).await;
}

#[tokio::test(start_paused = true)]
async fn call_without_offer_bob_hangs_up() {
    basic_call(false, false).await;
}

#[tokio::test(start_paused = true)]
async fn reject_ends_both_sides_with_480() {
    for with_sdp in [true, false] {
        let p = pair(2).await;
        let call = inviter(&p, with_sdp);
        call.invite(Default::default()).await.unwrap();
        let inv = invitation(&p).await;
        inv.reject(Default::default()).await.unwrap();
        assert_eq!(
            inv.end_reason(),
            Some(EndReason::LocalReject { status: 480 })
        );
        assert!(matches!(
            call.established().await,
            Err(Error::Rejected { status: 480, .. })
        ));
        // a second answer is refused
        assert!(inv.reject(Default::default()).await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn accept_twice_is_a_state_error() {
    let p = pair(3).await;
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    inv.accept(Default::default()).await.unwrap();
    assert!(matches!(
        inv.accept(Default::default()).await,
        Err(Error::StateTransition { .. })
    ));
    assert!(matches!(
        inv.reject(Default::default()).await,
        Err(Error::StateTransition { .. })
    ));
    call.established().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn redirect_reaches_the_caller_as_3xx() {
    let p = pair(4).await;
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    inv.reject(InvitationRejectOptions {
        status_code: Some(302),
        extra_headers: vec![sipua::message::Header::new(
            sipua::message::HeaderName::Contact,
            "<sip:carol@10.0.0.3>",
        )],
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(matches!(
        call.terminated().await,
        EndReason::Rejected { status: 302, .. }
    ));
    // established() says why, with the 3xx and its Contact to follow
    match call.established().await {
        Err(Error::Rejected {
            status: 302,
            response: Some(r),
            ..
        }) => {
            let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
            assert!(text.contains("Contact: <sip:carol@10.0.0.3>"), "{text}");
        }
        other => panic!("expected the 302, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_before_any_provisional_ends_with_487() {
    for with_sdp in [true, false] {
        let p = pair(5).await;
        let call = inviter(&p, with_sdp);
        call.invite(Default::default()).await.unwrap();
        // sent before the 100 Trying comes back: the CANCEL waits for it (RFC 3261 §9.1)
        call.cancel(Default::default()).await.unwrap();
        assert_eq!(call.state(), SessionState::Terminating);
        let inv = invitation(&p).await;
        assert_eq!(inv.terminated().await, EndReason::Cancelled);
        assert!(matches!(
            call.terminated().await,
            EndReason::Rejected { status: 487, .. }
        ));
    }
}

/// Records every datagram the network carries (and drops none).
fn tap(net: &MemoryNetwork) -> Arc<std::sync::Mutex<Vec<String>>> {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    net.drop_when(move |_, _, b| {
        l.lock()
            .unwrap()
            .push(String::from_utf8_lossy(b).into_owned());
        false
    });
    log
}

fn count(log: &Arc<std::sync::Mutex<Vec<String>>>, prefix: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|m| m.starts_with(prefix))
        .count()
}

#[tokio::test(start_paused = true)]
async fn cancel_after_180_with_reason() {
    struct Cancelled(Arc<AtomicUsize>);
    impl SessionDelegate for Cancelled {
        fn on_cancel(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    struct Progress(Arc<AtomicUsize>);
    impl SessionDelegate for Progress {
        fn on_progress(&self, r: &Response) {
            if r.status() == 180 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let p = pair(6).await;
    let log = tap(&p.net);
    let progress = Arc::new(AtomicUsize::new(0));
    let cancels = Arc::new(AtomicUsize::new(0));
    let call = invite_with(
        &p,
        InviterOptions {
            delegate: Some(Arc::new(Progress(progress.clone()))),
            ..Default::default()
        },
    )
    .await;
    let inv = invitation(&p).await;
    inv.set_delegate(Arc::new(Cancelled(cancels.clone())));
    inv.progress(Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(progress.load(Ordering::SeqCst), 1);
    call.cancel(InviterCancelOptions {
        status_code: Some(200),
        reason_phrase: Some("answered elsewhere".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(inv.terminated().await, EndReason::Cancelled);
    assert_eq!(cancels.load(Ordering::SeqCst), 1);
    assert!(matches!(
        call.terminated().await,
        EndReason::Rejected { status: 487, .. }
    ));
    let log = log.lock().unwrap();
    let cancel = log
        .iter()
        .find(|m| m.starts_with("CANCEL "))
        .expect("a CANCEL");
    assert!(
        cancel.contains("Reason: SIP;cause=200;text=\"answered elsewhere\"\r\n"),
        "{cancel}"
    );
    // the 487 is acknowledged by the INVITE client transaction
    assert!(log.iter().any(|m| m.starts_with("ACK ")));
}

#[tokio::test(start_paused = true)]
async fn cancel_and_200_cross_the_200_wins_and_is_ended_with_bye() {
    let p = pair(7).await;
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    inv.progress(Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // both leave at the same instant: the 200 and the CANCEL cross on the wire
    let (a, b) = tokio::join!(
        call.cancel(Default::default()),
        inv.accept(Default::default())
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    call.terminated().await;
    assert_eq!(call.state(), SessionState::Terminated);
}

#[tokio::test(start_paused = true)]
async fn lost_ack_is_recovered_by_the_2xx_retransmission() {
    let p = pair(8).await;
    p.net.drop_next(b"ACK ", 2);
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    let log = tap(&p.net);
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    // Bob may only hang up once the ACK is in (RFC 3261 §15): the BYE waits for it
    let bye = inv.bye().await.unwrap();
    assert_eq!(bye.status(), 200);
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
    // two ACKs lost: the 200 went out three times, each answered by an ACK
    assert_eq!(
        count(&log, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060"),
        3
    );
    assert_eq!(count(&log, "ACK "), 3);
}

#[tokio::test(start_paused = true)]
async fn never_acked_2xx_ends_with_bye_after_64_t1() {
    let p = pair(9).await;
    p.net.drop_next(b"ACK ", usize::MAX);
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    let start = tokio::time::Instant::now();
    inv.accept(Default::default()).await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::AckTimeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(32) && waited < Duration::from_secs(34),
        "{waited:?}"
    );
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
}

/// RFC 3261 §15: a callee that hangs up before the ACK of its 2xx holds the BYE
/// (`Terminating`) until the ACK comes, then sends it; if the ACK never comes, the BYE is
/// never sent and `bye()` fails with a timeout.
#[tokio::test(start_paused = true)]
async fn a_bye_asked_for_before_the_ack_goes_after_it_or_not_at_all() {
    for (seed, acks_lost) in [(13, 2), (14, usize::MAX)] {
        let p = pair(seed).await;
        p.net.drop_next(b"ACK ", acks_lost);
        let call = inviter(&p, true);
        call.invite(Default::default()).await.unwrap();
        let inv = invitation(&p).await;
        let log = tap(&p.net);
        inv.accept(Default::default()).await.unwrap();
        let bye = {
            let s = inv.session().clone();
            tokio::spawn(async move { s.bye().await })
        };
        // the 200 went at 0 and again at T1: no ACK has come yet
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(inv.state(), SessionState::Terminating);
        assert_eq!(count(&log, "BYE "), 0, "no BYE before the ACK");
        let outcome = bye.await.unwrap();
        if acks_lost == 2 {
            assert_eq!(outcome.unwrap().status(), 200);
            assert_eq!(count(&log, "BYE "), 1);
            assert_eq!(inv.end_reason(), Some(EndReason::LocalBye));
            assert_eq!(call.terminated().await, EndReason::RemoteBye);
        } else {
            assert!(matches!(outcome, Err(Error::Timeout)), "{outcome:?}");
            assert_eq!(inv.end_reason(), Some(EndReason::AckTimeout));
            assert_eq!(inv.state(), SessionState::Terminated);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn unanswered_invitation_times_out_with_480() {
    let net = MemoryNetwork::new(10, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice", |_| {}).await;
    let bob = agent(&net, BOB, "bob", |o| {
        o.no_answer_timeout = Duration::from_secs(5)
    })
    .await;
    let call = Inviter::new(&alice, bob_uri(), Default::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    inv.progress(Default::default()).await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(matches!(
        call.terminated().await,
        EndReason::Rejected { status: 480, .. }
    ));
    assert!(start.elapsed() <= Duration::from_secs(6));
    assert_eq!(
        inv.end_reason(),
        Some(EndReason::LocalReject { status: 480 })
    );
}

#[tokio::test(start_paused = true)]
async fn nobody_there_times_out_after_timer_b() {
    let net = MemoryNetwork::new(11, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice", |_| {}).await;
    let call = Inviter::new(&alice, bob_uri(), Default::default()).unwrap();
    let start = tokio::time::Instant::now();
    call.invite(Default::default()).await.unwrap();
    assert_eq!(call.terminated().await, EndReason::Timeout);
    assert!(start.elapsed() >= Duration::from_secs(32));
    assert!(matches!(call.established().await, Err(Error::Timeout)));
}

#[tokio::test(start_paused = true)]
async fn early_media_applies_the_answer_of_the_183() {
    let p = pair(12).await;
    let call = invite_with(
        &p,
        InviterOptions {
            early_media: true,
            ..Default::default()
        },
    )
    .await;
    let inv = invitation(&p).await;
    inv.progress(InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(call.state(), SessionState::Establishing);
    assert!(
        call.remote_description().is_some(),
        "answer from the 183 applied"
    );
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_early_media_the_183_answer_waits_for_the_200() {
    let p = pair(13).await;
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    inv.progress(InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(call.remote_description().is_none());
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    assert!(call.remote_description().is_some());
}

async fn established(p: &Pair, with_sdp: bool) -> (Inviter, Invitation) {
    let call = inviter(p, with_sdp);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(p).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // the ACK lands
    (call, inv)
}

#[tokio::test(start_paused = true)]
async fn reinvite_accepted_from_either_side_with_and_without_offer() {
    for with_sdp in [true, false] {
        let p = pair(14).await;
        let (call, inv) = established(&p, with_sdp).await;
        let hold = SessionInviteOptions {
            without_sdp: !with_sdp,
            ..Default::default()
        };
        call.session().invite(hold.clone()).await.unwrap();
        inv.invite(hold).await.unwrap();
        assert_eq!(call.state(), SessionState::Established);
        assert_eq!(inv.state(), SessionState::Established);
        call.bye().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn second_reinvite_while_one_is_pending_is_request_pending() {
    let p = pair(15).await;
    let (call, _inv) = established(&p, true).await;
    let (a, b) = tokio::join!(
        call.session().invite(Default::default()),
        call.session().invite(Default::default())
    );
    assert!(a.is_ok());
    assert_eq!(b, Err(Error::RequestPending));
}

#[tokio::test(start_paused = true)]
async fn reinvite_glare_491_both_sides_retry_and_succeed() {
    let p = pair(16).await;
    let (call, inv) = established(&p, true).await;
    let log = tap(&p.net);
    let (a, b) = tokio::join!(
        call.session().invite(Default::default()),
        inv.invite(Default::default())
    );
    a.unwrap();
    b.unwrap();
    // both re-INVITEs crossed and got 491, then each side retried after its back-off
    assert_eq!(count(&log, "SIP/2.0 491"), 2);
    assert_eq!(count(&log, "INVITE "), 4);
}

#[tokio::test(start_paused = true)]
async fn info_and_message_reach_the_delegate_and_its_answer_comes_back() {
    struct Bob;
    impl SessionDelegate for Bob {
        fn on_info(&self, info: sipua::Info) {
            if info.body() == b"Signal=5\r\nDuration=160\r\n" {
                info.accept()
            } else {
                info.reject(400)
            }
        }
        fn on_message(&self, message: sipua::Message) {
            // kept, and answered later from another task, with a header
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                message.reject_with(
                    415,
                    RequestOptions {
                        extra_headers: vec![Header::new(HeaderName::Accept, "text/html")],
                        ..Default::default()
                    },
                );
            });
        }
    }
    let p = pair(17).await;
    let call = invite_with(
        &p,
        InviterOptions {
            delegate: Some(Arc::new(Bob)),
            ..Default::default()
        },
    )
    .await;
    let inv = invitation(&p).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Bob sends, Alice's delegate answers
    let body = |s: &'static str, t: &str| RequestOptions {
        body: Some(sipua::BodyAndContentType {
            body: s.into(),
            content_type: t.into(),
        }),
        ..Default::default()
    };
    let r = inv
        .info(body(
            "Signal=5\r\nDuration=160\r\n",
            "application/dtmf-relay",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = inv
        .info(body("Signal=x", "application/dtmf-relay"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = inv.message(body("hello", "text/plain")).await.unwrap();
    assert_eq!(r.status(), 415);
    let text = String::from_utf8_lossy(&r.to_bytes()).into_owned();
    assert!(text.contains("\r\nAccept: text/html\r\n"), "{text}");
    // Alice sends; Bob has no delegate: 200
    let r = call.message(body("hi", "text/plain")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn requests_outside_established_are_state_errors() {
    let p = pair(18).await;
    let call = inviter(&p, true);
    assert!(matches!(
        call.bye().await,
        Err(Error::StateTransition { .. })
    ));
    assert!(matches!(call.invite(Default::default()).await, Ok(())));
    assert!(matches!(
        call.info(Default::default()).await,
        Err(Error::StateTransition { .. })
    ));
    let inv = invitation(&p).await;
    inv.reject(Default::default()).await.unwrap();
    call.terminated().await;
    assert_eq!(call.bye().await.unwrap_err(), Error::SessionTerminated);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_disposes_the_call() {
    let p = pair(19).await;
    let (call, inv) = established(&p, true).await;
    drop(call);
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
}

/// An established call one side of which (Alice's `Inviter` when `alice_detaches`, else
/// Bob's `Invitation`) was detached and dropped; the other side's handle is returned.
async fn detached(p: &Pair, alice_detaches: bool) -> Session {
    let (call, inv) = established(p, true).await;
    let (gone, kept) = if alice_detaches {
        (call.session().clone(), inv.session().clone())
    } else {
        (inv.session().clone(), call.session().clone())
    };
    gone.detach();
    drop((gone, call, inv));
    kept
}

#[tokio::test(start_paused = true)]
async fn a_detached_call_outlives_its_handles_and_ends_as_calls_do() {
    for alice_detaches in [false, true] {
        // one side answers (or calls) and forgets: its handle goes, the call stays up
        let p = pair(19).await;
        let (gone, kept) = if alice_detaches {
            (&p.alice, &p.bob)
        } else {
            (&p.bob, &p.alice)
        };
        let call = detached(&p, alice_detaches).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(call.state(), SessionState::Established);
        assert_eq!(gone.stats().await.unwrap().sessions, 1);
        // the other side's BYE ends it there too: the detached session's task is gone
        call.bye().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(gone.stats().await.unwrap().sessions, 0);
        assert_eq!(kept.stats().await.unwrap().sessions, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_detached_call_is_hung_up_by_stop() {
    let p = pair(21).await;
    let call = detached(&p, false).await;
    p.bob.stop().await;
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
}

#[tokio::test(start_paused = true)]
async fn a_long_call_s_requests_leave_no_routes_behind() {
    // a voice bot's call: DTMF by INFO, one a second, both ways; each transaction's route in
    // the agents goes with its final response, so nothing grows with the call's age
    let p = pair(22).await;
    let (call, inv) = established(&p, true).await;
    let baseline = p.bob.stats().await.unwrap().routes;
    for n in 0..50 {
        let info = RequestOptions {
            body: Some(sipua::BodyAndContentType {
                body: format!("Signal={}\r\nDuration=160\r\n", n % 10).into(),
                content_type: "application/dtmf-relay".into(),
            }),
            ..Default::default()
        };
        assert_eq!(call.info(info.clone()).await.unwrap().status(), 200);
        assert_eq!(inv.info(info).await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for ua in [&p.alice, &p.bob] {
        let routes = ua.stats().await.unwrap().routes;
        assert!(routes <= baseline + 1, "{routes} routes after 100 INFOs");
    }
    call.bye().await.unwrap();
    inv.terminated().await;
}

#[tokio::test(start_paused = true)]
async fn graceful_stop_hangs_up_live_calls() {
    let p = pair(20).await;
    let (_call, inv) = established(&p, true).await;
    p.alice.stop().await;
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    assert_eq!(p.alice.state(), sipua::UserAgentState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn calls_complete_at_20_percent_loss_with_duplication_and_reordering() {
    let mut completed = 0;
    for seed in 0..40 {
        let net = MemoryNetwork::new(
            seed,
            LinkConfig {
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(30),
                loss: 0.2,
                duplicate: 0.1,
            },
        );
        let alice = agent(&net, ALICE, "alice", |_| {}).await;
        let bob = agent(&net, BOB, "bob", |_| {}).await;
        let call = Inviter::new(
            &alice,
            bob_uri(),
            InviterOptions {
                invite_without_sdp: seed % 2 == 1,
                ..Default::default()
            },
        )
        .unwrap();
        call.invite(Default::default()).await.unwrap();
        let inv = bob.next_invitation().await.unwrap();
        inv.accept(Default::default()).await.unwrap();
        call.established()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // the ACK (with the answer, when the 200 offered) gets through within 64·T1
        for _ in 0..320 {
            if inv.remote_description().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bye = call
            .bye()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(bye.status(), 200, "seed {seed}");
        assert_eq!(inv.terminated().await, EndReason::RemoteBye, "seed {seed}");
        assert!(inv.remote_description().is_some(), "seed {seed}");
        completed += 1;
        alice.stop().await;
        bob.stop().await;
    }
    assert_eq!(completed, 40);
}

/// Alice calls an address that forks to two Bobs (as a forking proxy would).
async fn forked(seed: u64) -> (MemoryNetwork, UserAgent, UserAgent, UserAgent) {
    let net = MemoryNetwork::new(seed, LinkConfig::default());
    let alice = agent(&net, ALICE, "alice", |_| {}).await;
    let bob1 = agent(&net, BOB, "bob", |_| {}).await;
    let bob2 = agent(&net, "10.0.0.3:5060", "bob", |_| {}).await;
    net.fork(addr("10.0.0.9:5060"), &[addr(BOB), addr("10.0.0.3:5060")]);
    (net, alice, bob1, bob2)
}

#[tokio::test(start_paused = true)]
async fn forked_invite_both_answer_the_first_2xx_wins_the_second_is_acked_and_ended() {
    for with_sdp in [true, false] {
        let (net, alice, bob1, bob2) = forked(21).await;
        let log = tap(&net);
        let call = Inviter::new(
            &alice,
            "sip:bob@10.0.0.9:5060".parse().unwrap(),
            InviterOptions {
                invite_without_sdp: !with_sdp,
                ..Default::default()
            },
        )
        .unwrap();
        call.invite(Default::default()).await.unwrap();
        let (i1, i2) = (
            bob1.next_invitation().await.unwrap(),
            bob2.next_invitation().await.unwrap(),
        );
        i1.accept(Default::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        i2.accept(Default::default()).await.unwrap();
        call.established().await.unwrap();
        // the losing fork is acknowledged, then hung up
        assert_eq!(
            i2.terminated().await,
            EndReason::RemoteBye,
            "sdp {with_sdp}"
        );
        assert_eq!(
            call.dialog(),
            i1.dialog().map(|d| sipua::proto::dialog::DialogId {
                call_id: d.call_id,
                local_tag: d.remote_tag,
                remote_tag: d.local_tag,
            })
        );
        assert_eq!(count(&log, "ACK "), 2);
        assert_eq!(count(&log, "BYE "), 1);
        assert_eq!(i1.state(), SessionState::Established);
        call.bye().await.unwrap();
        assert_eq!(i1.terminated().await, EndReason::RemoteBye);
    }
}

#[tokio::test(start_paused = true)]
async fn early_media_survives_forking_the_answer_follows_the_dialog_that_wins() {
    let (_net, alice, bob1, bob2) = forked(22).await;
    let call = Inviter::new(
        &alice,
        "sip:bob@10.0.0.9:5060".parse().unwrap(),
        InviterOptions {
            early_media: true,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let (i1, i2) = (
        bob1.next_invitation().await.unwrap(),
        bob2.next_invitation().await.unwrap(),
    );
    let early = InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    };
    i1.progress(early.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sdp = |s: &sipua::Session| {
        String::from_utf8_lossy(&s.remote_description().unwrap().body).into_owned()
    };
    assert!(
        sdp(&call).contains("c=IN IP4 10.0.0.2"),
        "early media from the first fork"
    );
    i2.progress(early).await.unwrap();
    i2.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    // the second Bob answered: the media now follows his answer; the first fork is cancelled
    assert!(sdp(&call).contains("c=IN IP4 10.0.0.3"), "{}", sdp(&call));
    assert_eq!(call.state(), SessionState::Established);
    i1.reject(Default::default()).await.ok();
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_late_offer_answered_in_one_fork_s_prack_gives_way_to_the_winning_fork_s_offer() {
    // Alice's INVITE has no offer; the first Bob offers in a reliable 183, which Alice
    // answers in its PRACK; the second Bob's 2xx wins with an offer of its own, which Alice
    // answers in the ACK: her media follows him, and the first fork is ended
    let (net, alice, bob1, bob2) = forked(24).await;
    let log = tap(&net);
    let call = Inviter::new(
        &alice,
        "sip:bob@10.0.0.9:5060".parse().unwrap(),
        InviterOptions {
            invite_without_sdp: true,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let (i1, i2) = (
        bob1.next_invitation().await.unwrap(),
        bob2.next_invitation().await.unwrap(),
    );
    let reliable = InvitationProgressOptions {
        status_code: Some(183),
        rel100: true,
        ..Default::default()
    };
    i1.progress(reliable).await.unwrap();
    let sdp = |s: &sipua::Session| {
        String::from_utf8_lossy(&s.remote_description().unwrap().body).into_owned()
    };
    assert!(
        sdp(&call).contains("c=IN IP4 10.0.0.2"),
        "the first fork's offer"
    );
    assert!(i1.remote_description().is_some(), "answered in the PRACK");
    i2.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    assert!(sdp(&call).contains("c=IN IP4 10.0.0.3"), "{}", sdp(&call));
    for _ in 0..20 {
        if i2.remote_description().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(i2.remote_description().is_some(), "answered in the ACK");
    assert_eq!(count(&log, "PRACK "), 1);
    assert_eq!(call.state(), SessionState::Established);
    i1.reject(Default::default()).await.ok();
    call.bye().await.unwrap();
    assert_eq!(i2.terminated().await, EndReason::RemoteBye);
}

#[tokio::test(start_paused = true)]
async fn invite_expires_header_ends_an_unanswered_invitation_with_487() {
    let p = pair(23).await;
    let call = invite_with(
        &p,
        InviterOptions {
            extra_headers: vec![sipua::message::Header::new(
                sipua::message::HeaderName::Expires,
                "3",
            )],
            ..Default::default()
        },
    )
    .await;
    let inv = invitation(&p).await;
    inv.progress(Default::default()).await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(matches!(
        call.terminated().await,
        EndReason::Rejected { status: 487, .. }
    ));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn reinvite_before_the_ack_of_the_first_2xx_gets_500_with_retry_after_and_is_retried() {
    let p = pair(24).await;
    let log = tap(&p.net);
    let call = inviter(&p, true);
    call.invite(Default::default()).await.unwrap();
    let inv = invitation(&p).await;
    // Alice's ACK is lost, and Alice re-INVITEs while Bob's 2xx is unacknowledged: Bob
    // answers 500 with Retry-After (RFC 3261 §14.2), and Alice tries again after it, by
    // when the retransmitted 2xx has been acknowledged
    p.net.drop_next(b"ACK ", 1);
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    let start = tokio::time::Instant::now();
    call.session().invite(Default::default()).await.unwrap();
    assert_eq!(count(&log, "SIP/2.0 500"), 1);
    assert!(
        start.elapsed() <= Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(inv.state(), SessionState::Established);
    call.session().invite(Default::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bye_crossing_a_reinvite_ends_the_session_and_the_reinvite_fails() {
    let p = pair(25).await;
    let (call, inv) = established(&p, true).await;
    let (r, bye) = tokio::join!(call.session().invite(Default::default()), inv.bye());
    assert!(bye.is_ok());
    assert!(r.is_err(), "{r:?}");
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
}

#[tokio::test(start_paused = true)]
async fn anonymous_caller_hides_its_identity_in_from() {
    let p = pair(26).await;
    let call = invite_with(
        &p,
        InviterOptions {
            anonymous: true,
            ..Default::default()
        },
    )
    .await;
    let inv = invitation(&p).await;
    let from = inv.request().from().unwrap().clone();
    assert_eq!(from.display.as_deref(), Some("Anonymous"));
    assert_eq!(from.uri.to_string(), "sip:anonymous@anonymous.invalid");
    let text = String::from_utf8_lossy(&inv.request().to_bytes()).into_owned();
    assert!(text.contains("Privacy: id\r\n"), "{text}");
    assert!(
        text.contains("P-Preferred-Identity: <sip:alice@10.0.0.1>\r\n"),
        "{text}"
    );
    // the call itself works as any other
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn identities_of_both_sides_and_the_asserted_one() {
    let p = pair(41).await;
    let call = invite_with(
        &p,
        InviterOptions {
            extra_headers: vec![sipua::message::Header::new(
                sipua::message::HeaderName::PAssertedIdentity,
                "\"Alice Example\" <sip:+15550100@example.com>",
            )],
            ..Default::default()
        },
    )
    .await;
    // before the answer the caller knows the target only
    assert_eq!(call.remote_identity().unwrap().uri, bob_uri());
    assert!(call
        .local_identity()
        .unwrap()
        .uri
        .to_string()
        .starts_with("sip:alice@"));
    let inv = p.bob.next_invitation().await.unwrap();
    assert!(inv
        .remote_identity()
        .unwrap()
        .uri
        .to_string()
        .starts_with("sip:alice@"));
    assert!(inv.remote_identity().unwrap().params.value("tag").is_none());
    assert_eq!(inv.local_identity().unwrap().uri, bob_uri());
    let asserted = inv.asserted_identity().expect("the asserted identity");
    assert_eq!(asserted.display.as_deref(), Some("Alice Example"));
    assert_eq!(asserted.uri.to_string(), "sip:+15550100@example.com");
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    // after the answer: the callee's To, without its tag
    let remote = call.remote_identity().unwrap();
    assert_eq!(remote.uri, bob_uri());
    assert!(remote.params.value("tag").is_none());
    assert!(call.asserted_identity().is_none());
    call.bye().await.unwrap();
}

/// A callee's INVITE is kept as its bytes once answered and let go by the application (a
/// held call does not keep it parsed); what is read from it stays right.
#[tokio::test(start_paused = true)]
async fn an_answered_callee_s_id_and_identities_outlive_its_invitation() {
    let p = pair(43).await;
    let call = invite_with(&p, InviterOptions::default()).await;
    let inv = p.bob.next_invitation().await.unwrap();
    let id = inv.id().expect("a callee knows its id from the INVITE");
    let caller = inv.remote_identity().unwrap();
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    let session = inv.session().clone();
    drop(inv);
    // the Call-ID and the caller's From tag, not our own tag
    assert_eq!(session.id().as_deref(), Some(id.as_str()));
    assert_eq!(session.remote_identity(), Some(caller));
    assert_eq!(session.local_identity().unwrap().uri, bob_uri());
    // and again: a second read parses the bytes again as well
    assert_eq!(session.id().as_deref(), Some(id.as_str()));
    call.bye().await.unwrap();
    session.terminated().await;
}

/// An established call with nothing timed keeps no task: its session waits parked until
/// its next command or message, which wakes it in a new task (the BYE, from either side).
#[tokio::test(start_paused = true)]
async fn held_calls_keep_no_task_and_wake_for_their_bye() {
    let p = pair(44).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let idle = metrics.num_alive_tasks();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let call = invite_with(&p, InviterOptions::default()).await;
        let inv = p.bob.next_invitation().await.unwrap();
        inv.accept(Default::default()).await.unwrap();
        call.established().await.unwrap();
        calls.push((call, inv.session().clone()));
    }
    // the ACKs land; after a few idle seconds the sessions park (nothing is timed for
    // long: the session timer's refresh is minutes away)
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = metrics.num_alive_tasks();
    assert!(
        held < idle + 5,
        "{held} tasks alive with 10 calls held on both sides, {idle} before"
    );
    // every handle still works on a parked session, and each wakes for its BYE
    for (i, (call, callee)) in calls.into_iter().enumerate() {
        assert_eq!(call.state(), SessionState::Established);
        if i % 2 == 0 {
            assert_eq!(call.bye().await.unwrap().status(), 200);
            assert_eq!(callee.terminated().await, EndReason::RemoteBye);
        } else {
            assert_eq!(callee.bye().await.unwrap().status(), 200);
            assert_eq!(call.terminated().await, EndReason::RemoteBye);
        }
    }
}

/// Parked calls still end with their agent: `stop` wakes each and it sends its BYE.
#[tokio::test(start_paused = true)]
async fn parked_calls_are_hung_up_by_stop() {
    let p = pair(45).await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(established(&p, true).await);
    }
    // idle: every session of both sides parks
    tokio::time::sleep(Duration::from_secs(5)).await;
    p.bob.stop().await;
    for (call, inv) in calls {
        let ended = tokio::time::timeout(Duration::from_secs(60), call.terminated()).await;
        assert_eq!(ended, Ok(EndReason::RemoteBye));
        assert_eq!(inv.state(), SessionState::Terminated);
    }
}

/// A parked session is woken from any thread: here a handle's BYE from a thread of its own,
/// on a runtime of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_wakes_for_a_handle_on_another_thread() {
    let p = pair(46).await;
    let (call, inv) = established(&p, true).await;
    // real time here: two idle seconds park both sessions
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let session = inv.session().clone();
    let status = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { session.bye().await.map(|r| r.status()) })
    })
    .join()
    .unwrap();
    assert_eq!(status.unwrap(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(10), call.terminated()).await;
    assert_eq!(ended, Ok(EndReason::RemoteBye));
}

/// A runtime dropped while sessions are parked lets them go: nothing keeps a parked session
/// alive but its mailboxes, and the driver's go with the runtime.
#[test]
fn a_runtime_dropped_with_parked_sessions_lets_them_go() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (p, call, inv) = rt.block_on(async {
        let p = pair(47).await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let idle = metrics.num_alive_tasks();
        let (call, inv) = established(&p, true).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        // both sessions parked: their tasks are gone
        assert_eq!(metrics.num_alive_tasks(), idle);
        (p, call, inv)
    });
    // a session's state sender lives in its task, parked or not
    let (a, b) = (call.state_change(), inv.state_change());
    assert!(a.has_changed().is_ok() && b.has_changed().is_ok());
    drop(rt);
    assert!(
        a.has_changed().is_err() && b.has_changed().is_err(),
        "a parked session outlived its runtime"
    );
    drop((p, call, inv));
}

/// A media handler factory that keeps each session's ender, as a media handler's task would.
struct KeepsEnders {
    inner: sipua::FixedSdpFactory,
    enders: Arc<std::sync::Mutex<Vec<sipua::SessionEnder>>>,
}

impl sipua::SessionDescriptionHandlerFactory for KeepsEnders {
    fn create(
        &self,
        session: &sipua::SessionContext,
        options: &sipua::SessionDescriptionHandlerOptions,
    ) -> Result<Box<dyn sipua::SessionDescriptionHandler>, sipua::SdhError> {
        self.enders.lock().unwrap().push(session.ender());
        self.inner.create(session, options)
    }
}

#[tokio::test(start_paused = true)]
async fn media_that_finds_the_peer_gone_ends_the_session_with_bye_and_the_reason() {
    let net = MemoryNetwork::new(3, LinkConfig::default());
    let enders = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = enders.clone();
    let alice = agent(&net, ALICE, "alice", |_| {}).await;
    let bob = agent(&net, BOB, "bob", move |o| {
        o.session_description_handler_factory = Arc::new(KeepsEnders {
            inner: Default::default(),
            enders: kept,
        });
    })
    .await;
    let p = Pair { net, alice, bob };
    let call = invite_with(&p, Default::default()).await;
    let inv = invitation(&p).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    let ender = enders
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("Bob's handler was made");
    // Bob's media says the peer is gone: Bob hangs up, and says why
    ender.end(sipua::SdhError::new("the peer left"));
    assert_eq!(call.terminated().await, EndReason::RemoteBye);
    match inv.terminated().await {
        EndReason::MediaFailure(e) => assert!(e.to_string().contains("the peer left"), "{e}"),
        other => panic!("ended {other:?}"),
    }
    // once ended, or with no session at all, an ender does nothing
    ender.end(sipua::SdhError::new("again"));
    sipua::SessionEnder::default().end(sipua::SdhError::new("no session"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(inv.end_reason(), Some(EndReason::MediaFailure(_))));
}
