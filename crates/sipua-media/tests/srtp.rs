//! SDES-SRTP calls between two sipua user agents on loopback ([`RtpAudio`] on both sides):
//! over TLS the keys go in the SDP and the audio is encrypted both ways (and heard); over UDP
//! no key is offered or accepted unless forced; `Require` takes nothing else.
#![cfg(feature = "srtp")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipua::message::Uri;
use sipua::{
    EndReason, Error, Invitation, Inviter, Listen, TlsOptions, UserAgent, UserAgentOptions,
};
mod common;

use common::{next, play_and_record, Heard};
use sipua_media::analysis;
use sipua_media::audio::demo_melody;
use sipua_media::{MediaHandle, RtpAudioFactory, RtpAudioOptions, SessionAudio, SrtpPolicy};

fn tls() -> TlsOptions {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (chain, key) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    TlsOptions::from_pem(&chain, &key, &chain).unwrap()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An agent on `listen` whose calls play `play` and record what they hear, under `srtp`.
async fn agent(
    user: &str,
    listen: Listen,
    tls: &TlsOptions,
    srtp: SrtpPolicy,
    play: Option<Vec<i16>>,
) -> (UserAgent, Heard) {
    let (audio, heard) = play_and_record(play);
    let ua = UserAgent::new(UserAgentOptions {
        listen,
        user: user.into(),
        tls: tls.clone(),
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            audio,
            srtp,
            ..Default::default()
        })),
        ..Default::default()
    });
    ua.start().await.unwrap();
    (ua, heard)
}

fn target(ua: &UserAgent, transport: &str) -> Uri {
    format!("sip:bob@{};transport={transport}", ua.local_addr().unwrap())
        .parse()
        .unwrap()
}

fn media(s: &sipua::Session) -> Arc<MediaHandle> {
    s.audio().expect("an RtpAudio handle")
}

/// Alice calls Bob over `transport`; Bob answers what arrives. The call, and Bob's side.
async fn call(alice: &UserAgent, bob: &UserAgent, transport: &str) -> (Inviter, Invitation) {
    let call = Inviter::new(alice, target(bob, transport), Default::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(bob).await;
    let _ = inv.accept(Default::default()).await;
    (call, inv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_an_offered_key_encrypts_the_audio_both_ways() {
    let tls = tls();
    let melody = demo_melody();
    let (alice, _) = agent(
        "alice",
        Listen::Tls(loopback()),
        &tls,
        SrtpPolicy::Offer,
        Some(melody.clone()),
    )
    .await;
    // Bob only accepts (the default): the key came over TLS, so he takes it
    let (bob, bob_heard) = agent(
        "bob",
        Listen::Tls(loopback()),
        &tls,
        SrtpPolicy::default(),
        None,
    )
    .await;
    let (call, inv) = call(&alice, &bob, "tls").await;
    let offer = String::from_utf8_lossy(inv.request().body()).into_owned();
    assert!(
        offer.contains("m=audio ") && offer.contains(" RTP/SAVP "),
        "{offer}"
    );
    assert!(
        offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{offer}"
    );
    tokio::time::timeout(Duration::from_secs(5), call.established())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (a, b) = (media(&call), media(&inv));
    call.bye().await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    a.closed().await;
    b.closed().await;
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.srtp, Some("AES_CM_128_HMAC_SHA1_80"), "{sa:?}");
    assert_eq!(sb.srtp, Some("AES_CM_128_HMAC_SHA1_80"), "{sb:?}");
    assert_eq!((sa.srtp_rejected, sb.srtp_rejected), (0, 0));
    assert!(sb.packets_received >= 100 && sa.packets_received >= 100);
    let heard = bob_heard.lock().unwrap().clone();
    let (_, corr) = analysis::best_alignment(&melody, &heard, 16000);
    assert!(corr > 0.98, "correlation {corr}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_udp_no_key_is_offered_or_taken_unless_forced() {
    let tls = tls();
    let udp = || Listen::Udp(loopback());
    // offering: over UDP the offer is plain
    let (alice, _) = agent("alice", udp(), &tls, SrtpPolicy::Offer, None).await;
    let (bob, _) = agent("bob", udp(), &tls, SrtpPolicy::Offer, None).await;
    let (c, inv) = call(&alice, &bob, "udp").await;
    let offer = String::from_utf8_lossy(inv.request().body()).into_owned();
    assert!(
        offer.contains(" RTP/AVP ") && !offer.contains("a=crypto"),
        "{offer}"
    );
    c.established().await.unwrap();
    assert_eq!(media(&c).stats().srtp, None);
    c.bye().await.unwrap();
    // forced on one side: the other, on UDP, refuses the keys with a 488 that says why
    let (forcing, _) = agent("alice", udp(), &tls, SrtpPolicy::Force, None).await;
    let (c, inv) = call(&forcing, &bob, "udp").await;
    let offer = String::from_utf8_lossy(inv.request().body()).into_owned();
    assert!(
        offer.contains(" RTP/SAVP ") && offer.contains("a=crypto:"),
        "{offer}"
    );
    match tokio::time::timeout(Duration::from_secs(5), c.established())
        .await
        .unwrap()
    {
        Err(Error::Rejected {
            status: 488,
            response: Some(r),
            ..
        }) => {
            // the 488 says why (RFC 3261 §20.43)
            let warning = r
                .headers()
                .get(&sipua::message::HeaderName::Warning)
                .unwrap();
            let text = String::from_utf8_lossy(warning.value()).into_owned();
            assert!(text.starts_with("399 127.0.0.1 \"SRTP: "), "{text}");
            assert!(text.contains("not allowed here"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // forced on both: encrypted over UDP
    let (forced, _) = agent("bob", udp(), &tls, SrtpPolicy::Force, None).await;
    let (c, _inv) = call(&forcing, &forced, "udp").await;
    c.established().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(media(&c).stats().srtp, Some("AES_CM_128_HMAC_SHA1_80"));
    c.bye().await.unwrap();
    for ua in [alice, bob, forcing, forced] {
        ua.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_srtp_refuses_plain_offers_and_calls_without_tls() {
    let tls = tls();
    let (plain, _) = agent(
        "alice",
        Listen::Tls(loopback()),
        &tls,
        SrtpPolicy::Off,
        None,
    )
    .await;
    let (strict, _) = agent(
        "bob",
        Listen::Tls(loopback()),
        &tls,
        SrtpPolicy::Require,
        None,
    )
    .await;
    // a plain offer over TLS: 488
    let (c, inv) = call(&plain, &strict, "tls").await;
    assert!(!String::from_utf8_lossy(inv.request().body()).contains("SAVP"));
    match tokio::time::timeout(Duration::from_secs(5), c.terminated())
        .await
        .unwrap()
    {
        EndReason::Rejected { status, .. } => assert_eq!(status, 488),
        other => panic!("{other:?}"),
    }
    // a caller that requires SRTP will not send keys over UDP: the INVITE is not sent
    let (udp_strict, _) = agent(
        "carol",
        Listen::Udp(loopback()),
        &tls,
        SrtpPolicy::Require,
        None,
    )
    .await;
    let (udp_bob, _) = agent(
        "bob",
        Listen::Udp(loopback()),
        &tls,
        SrtpPolicy::Accept,
        None,
    )
    .await;
    let c = Inviter::new(&udp_strict, target(&udp_bob, "udp"), Default::default()).unwrap();
    let e = c.invite(Default::default()).await.unwrap_err();
    assert!(matches!(e, Error::SessionDescriptionHandler(_)), "{e:?}");
    assert!(e.to_string().contains("not TLS"), "{e}");
    for ua in [plain, strict, udp_strict, udp_bob] {
        ua.stop().await;
    }
}
