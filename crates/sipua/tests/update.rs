//! UPDATE (RFC 3311) between two user agents on the in-memory network with virtual time: a
//! new offer in an established call (hold), an UPDATE in the early dialog before the call is
//! answered, a refresh without a body, and glare (both sides offer at once: both get 491 and
//! keep their previous media). SIP.js has no UPDATE.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::message::Request;
use sipua::{
    Error, Invitation, InvitationProgressOptions, Inviter, InviterOptions, LinkConfig,
    MemoryNetwork, SessionDelegate, SessionDescriptionHandlerOptions, SessionUpdateOptions,
    UserAgent, UserAgentOptions,
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
        seed: Some(at.len() as u64 * 13 + user.len() as u64),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

/// A network whose every hop takes 50 ms: requests sent at once cross on the way.
fn slow_network(seed: u64) -> MemoryNetwork {
    MemoryNetwork::new(
        seed,
        LinkConfig {
            delay: Duration::from_millis(50),
            ..Default::default()
        },
    )
}

/// Alice calls Bob on `net` (asking for early media when `early_media`); Bob's invitation
/// has arrived. The agents come back too: the call lives as long as they do.
async fn ringing(
    net: &MemoryNetwork,
    early_media: bool,
) -> (UserAgent, UserAgent, Inviter, Invitation) {
    let (alice, bob) = (
        agent(net, ALICE, "alice").await,
        agent(net, BOB, "bob").await,
    );
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            early_media,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    (alice, bob, call, inv)
}

/// [`ringing`], and Bob answers.
async fn established(net: &MemoryNetwork) -> (UserAgent, UserAgent, Inviter, Invitation) {
    let (alice, bob, call, inv) = ringing(net, false).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    (alice, bob, call, inv)
}

#[derive(Default)]
struct Updates(Mutex<Vec<u16>>);

impl SessionDelegate for Updates {
    fn on_update(&self, _r: &Request, status: u16) {
        self.0.lock().unwrap().push(status);
    }
}

fn text(d: Option<sipua::BodyAndContentType>) -> String {
    String::from_utf8_lossy(&d.expect("a description").body).into_owned()
}

fn hold() -> SessionUpdateOptions {
    SessionUpdateOptions {
        session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_changes_the_media_of_an_established_call_and_a_bare_one_refreshes() {
    let net = MemoryNetwork::new(5, LinkConfig::default());
    let (alice, bob) = (
        agent(&net, ALICE, "alice").await,
        agent(&net, BOB, "bob").await,
    );
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        Default::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    let seen = Arc::new(Updates::default());
    inv.set_delegate(seen.clone());
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();

    call.update(hold()).await.unwrap();
    assert!(text(inv.remote_description()).contains("a=sendonly"));
    assert!(text(call.remote_description()).contains("a=recvonly"));
    // without a body: a refresh, answered 200
    call.update(SessionUpdateOptions {
        without_sdp: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // and from the callee's side too: Alice's answer keeps her on hold
    inv.update(Default::default()).await.unwrap();
    assert!(text(call.remote_description()).contains("a=sendrecv"));
    assert!(
        text(inv.remote_description()).contains("a=sendonly"),
        "a peer's offer does not take the call off hold"
    );
    assert_eq!(*seen.0.lock().unwrap(), [200, 200]);
    // Alice takes it off hold; from then on her answers are sendrecv again
    call.update(SessionUpdateOptions {
        session_description_handler_options: Some(Default::default()),
        ..Default::default()
    })
    .await
    .unwrap();
    inv.update(Default::default()).await.unwrap();
    assert!(text(inv.remote_description()).contains("a=sendrecv"));
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_update_in_the_early_dialog_goes_before_the_answer() {
    let net = MemoryNetwork::new(6, LinkConfig::default());
    let (alice, bob) = (
        agent(&net, ALICE, "alice").await,
        agent(&net, BOB, "bob").await,
    );
    let call = Inviter::new(
        &alice,
        format!("sip:bob@{BOB}").parse().unwrap(),
        InviterOptions {
            early_media: true,
            ..Default::default()
        },
    )
    .unwrap();
    // no early dialog yet: nothing to send an UPDATE in
    assert!(matches!(
        call.update(Default::default()).await,
        Err(Error::StateTransition { .. })
    ));
    call.invite(Default::default()).await.unwrap();
    let inv = bob.next_invitation().await.unwrap();
    let seen = Arc::new(Updates::default());
    inv.set_delegate(seen.clone());
    inv.progress(InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.update(hold()).await.unwrap();
    assert_eq!(*seen.0.lock().unwrap(), [200]);
    assert!(text(inv.remote_description()).contains("a=sendonly"));
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn updates_that_cross_both_get_491_and_the_media_stays() {
    let net = slow_network(7);
    let (_alice, _bob, call, inv) = established(&net).await;
    let before = text(call.remote_description());
    let (a, b) = tokio::join!(call.update(hold()), inv.update(hold()));
    for r in [a, b] {
        assert!(
            matches!(r, Err(Error::Rejected { status: 491, .. })),
            "{r:?}"
        );
    }
    assert_eq!(text(call.remote_description()), before);
    // afterwards one of them goes through
    call.update(hold()).await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_callee_that_answered_in_a_183_answers_a_later_offer_as_an_answer() {
    // the 183's answer completed the exchange: the 2xx repeats it, so the callee's handler
    // is not left holding an offer of its own that would swallow the caller's next offer
    let net = MemoryNetwork::new(8, LinkConfig::default());
    let (_alice, _bob, call, inv) = ringing(&net, true).await;
    inv.progress(InvitationProgressOptions {
        status_code: Some(183),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    call.update(hold()).await.unwrap();
    assert!(text(inv.remote_description()).contains("a=sendonly"));
    assert!(
        text(call.remote_description()).contains("a=recvonly"),
        "the callee answered the hold: {}",
        text(call.remote_description())
    );
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_update_crossing_a_reinvite_is_glare_on_both_sides_and_the_reinvite_retries() {
    let net = slow_network(9);
    let (_alice, _bob, call, inv) = established(&net).await;
    let seen = Arc::new(Updates::default());
    inv.set_delegate(seen.clone());
    let reinvite = sipua::SessionInviteOptions {
        session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
        ..Default::default()
    };
    let (a, b) = tokio::join!(call.update(hold()), inv.invite(reinvite));
    // Alice's UPDATE met Bob's re-INVITE: Bob refuses it with 491 (RFC 3311 §5.2) and Alice
    // refuses the re-INVITE with 491, which Bob sends again after his back-off
    assert!(
        matches!(a, Err(Error::Rejected { status: 491, .. })),
        "{a:?}"
    );
    b.unwrap();
    assert_eq!(*seen.0.lock().unwrap(), [491]);
    // Bob's hold went through, answered by Alice as an answer
    assert!(text(call.remote_description()).contains("a=sendonly"));
    assert!(text(inv.remote_description()).contains("a=recvonly"));
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_reoffer_at_a_time_a_bare_update_included() {
    // a re-INVITE asked for while our UPDATE (even a refresh without a body) waits for its
    // answer is refused at once: the two could arrive in the wrong order, and the peer
    // would refuse the lower CSeq (RFC 3261 §12.2.2); the same holds the other way round
    let net = slow_network(10);
    let (_alice, _bob, call, _inv) = established(&net).await;
    let bare = SessionUpdateOptions {
        without_sdp: true,
        ..Default::default()
    };
    let (a, b) = tokio::join!(call.update(bare.clone()), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.session().invite(Default::default()).await
    });
    a.unwrap();
    assert_eq!(b, Err(Error::RequestPending));
    let (a, b) = tokio::join!(call.session().invite(Default::default()), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        call.update(bare.clone()).await
    });
    a.unwrap();
    assert_eq!(b, Err(Error::RequestPending));
    // once answered, either goes
    call.update(bare).await.unwrap();
    call.session().invite(Default::default()).await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reinvite_waiting_out_its_glare_back_off_ends_with_the_call() {
    // both sides re-INVITE at once: both get 491 and wait (Alice, the Call-ID's owner,
    // 2.1–4 s; Bob up to 2 s). Alice hangs up during her wait: her re-INVITE is not sent
    // again, and whoever waits for it hears that the session ended, at once.
    let net = slow_network(11);
    let (_alice, _bob, call, inv) = established(&net).await;
    let started = tokio::time::Instant::now();
    let (a, b, bye) = tokio::join!(
        call.session().invite(Default::default()),
        inv.invite(Default::default()),
        async {
            // after both 491s (a round trip and a bit), before Alice's earliest retry
            tokio::time::sleep(Duration::from_millis(2_050)).await;
            call.bye().await
        }
    );
    bye.unwrap();
    assert_eq!(a, Err(Error::SessionTerminated));
    assert!(
        started.elapsed() < Duration::from_millis(2_300),
        "Alice's waiter heard at the hang-up, not at her retry's time: {:?}",
        started.elapsed()
    );
    // Bob's own retry went before the BYE (his wait is shorter) or meets an ended dialog
    let _ = b;
    assert_eq!(call.state(), sipua::SessionState::Terminated);
}
