//! Whole calls with real audio between two sipua user agents on loopback: the audio that
//! one side plays is what the other side records (checked by correlation and SNR, not by
//! packet counts), both with the offer in the INVITE and in the 200; DTMF through
//! `Session::send_dtmf`; hold and unhold by re-INVITE (SIP.js's hold cases); codec choice by
//! capabilities; 488 when no codec is shared.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::{
    BodyAndContentType, EndReason, Error, Invitation, Inviter, InviterOptions, Listen,
    SessionDescriptionHandlerOptions, SessionInviteOptions, UserAgent, UserAgentOptions,
};
mod common;

use common::{next, play_and_record, uri, Heard};
use sipua_media::analysis;
use sipua_media::audio::{demo_melody, Tone};
use sipua_media::sdp::offer_answer::{Codec, MediaCapabilities};
use sipua_media::sdp::Direction;
use sipua_media::{
    AudioIo, MediaEvent, MediaHandle, RtpAudioFactory, RtpAudioOptions, SessionAudio,
};

/// A user agent on loopback UDP whose calls play `play` (once) and record into memory.
async fn agent(user: &str, play: Option<Vec<i16>>, caps: MediaCapabilities) -> (UserAgent, Heard) {
    agent_at(user, play, caps, 8000).await
}

/// [`agent`] with its audio at `audio_rate` Hz.
async fn agent_at(
    user: &str,
    play: Option<Vec<i16>>,
    caps: MediaCapabilities,
    audio_rate: u32,
) -> (UserAgent, Heard) {
    let (audio, heard) = play_and_record(play);
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: user.into(),
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            capabilities: caps,
            audio,
            audio_rate,
            ..Default::default()
        })),
        ..Default::default()
    });
    ua.start().await.unwrap();
    (ua, heard)
}

async fn connect(
    alice: &UserAgent,
    bob: &UserAgent,
    options: InviterOptions,
) -> (Inviter, Invitation) {
    let call = Inviter::new(alice, uri(bob, "bob"), options).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(bob).await;
    inv.accept(Default::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), call.established())
        .await
        .unwrap()
        .unwrap();
    (call, inv)
}

fn media(s: &sipua::Session) -> Arc<MediaHandle> {
    s.audio().expect("an RtpAudio handle")
}

fn assert_heard(sent: &[i16], heard: &Heard) {
    let heard = heard.lock().unwrap().clone();
    let (_, corr) = analysis::best_alignment(sent, &heard, 16000);
    let snr = analysis::snr_db(sent, &heard);
    assert!(corr > 0.98, "correlation {corr}");
    assert!(snr > 30.0, "SNR {snr} dB");
}

async fn audio_flows_both_ways(without_sdp: bool) {
    let melody = demo_melody();
    let tone: Vec<i16> = {
        use sipua_media::audio::AudioSource;
        let mut t = Tone::new(697.0, 6000, 8000);
        let mut v = vec![0i16; 16000];
        t.read(&mut v);
        v
    };
    let (alice, alice_heard) = agent("alice", Some(melody.clone()), Default::default()).await;
    let (bob, bob_heard) = agent("bob", Some(tone.clone()), Default::default()).await;
    let (call, inv) = connect(
        &alice,
        &bob,
        InviterOptions {
            invite_without_sdp: without_sdp,
            ..Default::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (a, b) = (media(&call), media(&inv));
    assert_eq!(a.negotiated().unwrap().codec.encoding, "PCMU");
    call.bye().await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    a.closed().await;
    b.closed().await;
    assert_heard(&melody, &bob_heard);
    assert_heard(&tone, &alice_heard);
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        sa.packets_sent >= 120 && sb.packets_sent >= 120,
        "{sa:?} {sb:?}"
    );
    assert_eq!(sa.packets_lost, 0);
    assert_eq!(sb.packets_lost, 0);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_with_the_offer_in_the_invite() {
    audio_flows_both_ways(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_with_the_offer_in_the_200() {
    audio_flows_both_ways(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_from_send_dtmf_reaches_the_peer_as_events() {
    let (alice, _) = agent("alice", None, Default::default()).await;
    let (bob, _) = agent("bob", None, Default::default()).await;
    let (call, inv) = connect(&alice, &bob, Default::default()).await;
    let mut events = media(&inv).events();
    call.send_dtmf("5*#A").await.unwrap();
    let mut digits = String::new();
    while digits.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Ok(MediaEvent::Dtmf { digit, duration_ms })) => {
                assert!((80..=120).contains(&duration_ms), "{duration_ms} ms");
                digits.push(digit);
            }
            Ok(Ok(_)) => {}
            other => panic!("no DTMF event: {other:?}, so far {digits:?}"),
        }
    }
    assert_eq!(digits, "5*#A");
    // invalid digits are an error, not a silent no-op
    assert!(matches!(
        call.send_dtmf("12x").await,
        Err(Error::SessionDescriptionHandler(_))
    ));
    call.bye().await.unwrap();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_unhold_by_reinvite_stop_and_restart_the_held_sides_audio() {
    let (alice, _) = agent("alice", None, Default::default()).await;
    let (bob, _) = agent("bob", None, Default::default()).await;
    let (call, inv) = connect(&alice, &bob, Default::default()).await;
    let (a, b) = (media(&call), media(&inv));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Alice holds: she offers sendonly, Bob answers recvonly and stops sending
    call.session()
        .invite(SessionInviteOptions {
            session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.negotiated().unwrap().direction, Direction::SendOnly);
    assert_eq!(b.negotiated().unwrap().direction, Direction::RecvOnly);
    let remote = call.remote_description().unwrap();
    assert!(String::from_utf8_lossy(&remote.body).contains("a=recvonly"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (b_sent, a_sent) = (b.stats().packets_sent, a.stats().packets_sent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.stats().packets_sent,
        b_sent,
        "Bob sends nothing while held"
    );
    assert!(a.stats().packets_sent >= a_sent + 20, "Alice keeps sending");

    // unhold: both send again
    call.session().invite(Default::default()).await.unwrap();
    assert_eq!(a.negotiated().unwrap().direction, Direction::SendRecv);
    assert_eq!(b.negotiated().unwrap().direction, Direction::SendRecv);
    let b_sent = b.stats().packets_sent;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.stats().packets_sent >= b_sent + 20);

    // Bob holds Alice from his side the same way
    inv.invite(SessionInviteOptions {
        session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(a.negotiated().unwrap().direction, Direction::RecvOnly);
    call.bye().await.unwrap();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_picks_a_codec_both_sides_have() {
    let alaw_only = MediaCapabilities {
        codecs: vec![Codec::pcma()],
        ..Default::default()
    };
    let melody = demo_melody();
    let (alice, _) = agent("alice", Some(melody.clone()), Default::default()).await;
    let (bob, bob_heard) = agent("bob", None, alaw_only).await;
    let (call, inv) = connect(&alice, &bob, Default::default()).await;
    assert_eq!(media(&call).negotiated().unwrap().codec.encoding, "PCMA");
    assert_eq!(media(&call).negotiated().unwrap().codec.payload_type, 8);
    let answer = String::from_utf8_lossy(&call.remote_description().unwrap().body).into_owned();
    assert!(
        answer.contains("m=audio ") && answer.contains(" RTP/AVP 8 101"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    call.bye().await.unwrap();
    media(&inv).closed().await;
    assert_heard(&melody, &bob_heard);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_a_shared_codec_is_refused_with_488() {
    let (alice, _) = agent("alice", None, Default::default()).await;
    let (bob, _) = agent("bob", None, Default::default()).await;
    // Alice's offer is rewritten to offer G.729 only
    let g729_only: sipua::SessionDescriptionHandlerModifier = Arc::new(|d: BodyAndContentType| {
        let text = String::from_utf8_lossy(&d.body)
            .lines()
            .map(|l| {
                if l.starts_with("m=audio") {
                    let port = l.split(' ').nth(1).unwrap_or("0").to_owned();
                    format!("m=audio {port} RTP/AVP 18")
                } else {
                    l.to_owned()
                }
            })
            .filter(|l| !l.starts_with("a=rtpmap") && !l.starts_with("a=fmtp"))
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        Ok(BodyAndContentType::sdp(text))
    });
    let call = Inviter::new(
        &alice,
        uri(&bob, "bob"),
        InviterOptions {
            session_description_handler_modifiers: vec![g729_only],
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    // Bob's answer fails: the invitation is refused with 488
    let inv = next(&bob).await;
    assert!(inv.accept(Default::default()).await.is_err());
    let why = tokio::time::timeout(Duration::from_secs(5), call.terminated())
        .await
        .unwrap();
    match why {
        EndReason::Rejected { status, .. } => assert_eq!(status, 488),
        other => panic!("expected 488, got {other:?}"),
    }
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_media_port_is_503_with_retry_after_not_488() {
    // every port of Bob's range is taken (a flood of calls would do the same)
    let held: Vec<std::net::UdpSocket> = (47_000..47_004)
        .filter_map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok())
        .collect();
    let (alice, _) = agent("alice", None, Default::default()).await;
    let bob = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "bob".into(),
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            port_range: (47_000, 47_003),
            ..Default::default()
        })),
        ..Default::default()
    });
    bob.start().await.unwrap();
    let call = Inviter::new(&alice, uri(&bob, "bob"), Default::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(&bob).await;
    let err = inv.accept(Default::default()).await.unwrap_err();
    assert!(
        matches!(err, Error::MediaUnavailable { retry_after: 5, .. }),
        "{err:?}"
    );
    let why = tokio::time::timeout(Duration::from_secs(5), call.terminated())
        .await
        .unwrap();
    match why {
        EndReason::Rejected { status, .. } => assert_eq!(status, 503),
        other => panic!("expected 503, got {other:?}"),
    }
    drop(held);
    alice.stop().await;
    bob.stop().await;
}

/// An agent whose media factory notes who each call is with, and whether it saw the INVITE.
async fn noting_agent(user: &str, seen: Arc<Mutex<Vec<(String, bool)>>>) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: user.into(),
        session_description_handler_factory: Arc::new(RtpAudioFactory::new(RtpAudioOptions {
            audio: Arc::new(move |ctx| {
                let who = ctx.remote_identity().map(|a| a.uri.to_string());
                seen.lock()
                    .unwrap()
                    .push((who.unwrap_or_default(), ctx.request().is_some()));
                Ok(AudioIo::silence())
            }),
            ..Default::default()
        })),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_factory_knows_who_the_call_is_with() {
    // a bot names a recording per caller: its factory sees the peer and the INVITE
    let (a_seen, b_seen) = (Arc::default(), Arc::default());
    let alice = noting_agent("alice", Arc::clone(&a_seen)).await;
    let bob = noting_agent("bob", Arc::clone(&b_seen)).await;
    let (call, _inv) = connect(&alice, &bob, Default::default()).await;
    call.bye().await.unwrap();
    let b = b_seen.lock().unwrap().clone();
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(b[0].0.starts_with("sip:alice@"), "{b:?}");
    assert!(b[0].1, "the callee's factory sees the INVITE");
    let a = a_seen.lock().unwrap().clone();
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].0.starts_with("sip:bob@"), "{a:?}");
    assert!(!a[0].1, "a caller has no INVITE of the peer's");
    alice.stop().await;
    bob.stop().await;
}

#[cfg(feature = "opus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opus_call_carries_audio_on_the_offered_rtpmap() {
    let opus_first = MediaCapabilities {
        codecs: vec![sipua_media::codec::opus(), Codec::pcmu()],
        ..Default::default()
    };
    let melody = demo_melody();
    let (alice, _) = agent("alice", Some(melody.clone()), opus_first.clone()).await;
    let (bob, bob_heard) = agent("bob", None, opus_first).await;
    let (call, inv) = connect(&alice, &bob, Default::default()).await;
    let answer = String::from_utf8_lossy(&call.remote_description().unwrap().body).into_owned();
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
    assert_eq!(media(&call).negotiated().unwrap().codec.encoding, "opus");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    call.bye().await.unwrap();
    media(&inv).closed().await;
    let heard = bob_heard.lock().unwrap().clone();
    let (_, corr) = analysis::best_alignment(&melody, &heard, 16000);
    assert!(corr > 0.9, "correlation {corr}");
    assert_eq!(media(&inv).stats().codec, "opus");
    alice.stop().await;
    bob.stop().await;
}

/// An INVITE whose SDP names `victim` as its media address, from a socket that will never
/// acknowledge the 200 (a spoofed source, as an attacker's would be).
fn spoofed_invite(
    bob: std::net::SocketAddr,
    from: std::net::SocketAddr,
    victim: std::net::SocketAddr,
) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        ip = victim.ip(),
        port = victim.port()
    );
    format!(
        "INVITE sip:bob@{bob} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKspoof1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:mallory@example.com>;tag=m1\r\nTo: <sip:bob@{bob}>\r\n\
         Call-ID: spoof-1\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_but_unacknowledged_call_sends_no_media_to_the_address_its_offer_named() {
    // RFC 3261 §13.3.1.4 leaves the callee waiting for the ACK; until it comes (or RTP comes
    // from that address) the address is nobody's word: no RTP goes there
    let (bob, _) = agent("bob", Some(demo_melody()), Default::default()).await;
    let victim = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mallory = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let invite = spoofed_invite(
        bob.local_addr().unwrap(),
        mallory.local_addr().unwrap(),
        victim.local_addr().unwrap(),
    );
    mallory
        .send_to(invite.as_bytes(), bob.local_addr().unwrap())
        .await
        .unwrap();
    let inv = next(&bob).await;
    inv.accept(Default::default()).await.unwrap();
    let mut buf = [0u8; 2048];
    let mut reflected = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(_)) = tokio::time::timeout_at(until, victim.recv_from(&mut buf)).await {
        reflected += 1;
    }
    assert_eq!(
        reflected, 0,
        "RTP reached an address that never confirmed the call"
    );
    assert_eq!(media(&inv).stats().packets_sent, 0);
    bob.stop().await;
}

/// A bot asks for 16 kHz frames: with Opus, a 5 kHz tone (past what 8 kHz carries) goes
/// across both ways; with G.711 against an 8 kHz peer, the call still works, each side at its
/// own rate (a 1 kHz tone heard at the right pitch and level both ways).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wideband_call_keeps_its_band_with_opus_and_its_pitch_with_g711() {
    use common::{heard_tone, tone_at};
    #[cfg(feature = "opus")]
    {
        let opus = MediaCapabilities {
            codecs: vec![sipua_media::codec::opus()],
            ..Default::default()
        };
        let (alice, alice_heard) = agent_at(
            "alice",
            Some(tone_at(5000.0, 16000, 3.0)),
            opus.clone(),
            16000,
        )
        .await;
        let (bob, bob_heard) =
            agent_at("bob", Some(tone_at(6000.0, 16000, 3.0)), opus, 16000).await;
        let (call, inv) = connect(&alice, &bob, Default::default()).await;
        tokio::time::sleep(Duration::from_millis(2600)).await;
        call.bye().await.unwrap();
        media(&inv).closed().await;
        media(&call).closed().await;
        let candidates = [1000.0, 3000.0, 5000.0, 6000.0];
        let (f, level) = heard_tone(&bob_heard, 16000, &candidates);
        assert_eq!(f, Some(5000.0), "bob heard level {level}");
        assert!(level > 0.5, "bob heard level {level}");
        let (f, level) = heard_tone(&alice_heard, 16000, &candidates);
        assert_eq!(f, Some(6000.0), "alice heard level {level}");
        assert!(level > 0.5, "alice heard level {level}");
        alice.stop().await;
        bob.stop().await;
    }
    let pcmu = MediaCapabilities {
        codecs: vec![Codec::pcmu()],
        ..Default::default()
    };
    let (alice, alice_heard) = agent_at(
        "alice",
        Some(tone_at(1000.0, 48000, 3.0)),
        pcmu.clone(),
        48000,
    )
    .await;
    let (bob, bob_heard) = agent_at("bob", Some(tone_at(700.0, 8000, 3.0)), pcmu, 8000).await;
    let (call, inv) = connect(&alice, &bob, Default::default()).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    call.bye().await.unwrap();
    media(&inv).closed().await;
    media(&call).closed().await;
    let (f, level) = heard_tone(&bob_heard, 8000, &[700.0, 1000.0, 2000.0]);
    assert_eq!(f, Some(1000.0));
    assert!((0.8..1.2).contains(&level), "bob heard level {level}");
    let (f, level) = heard_tone(&alice_heard, 48000, &[700.0, 1000.0, 2000.0]);
    assert_eq!(f, Some(700.0));
    assert!((0.8..1.2).contains(&level), "alice heard level {level}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_rate_no_codec_runs_fails_the_call_with_a_clear_error() {
    let (alice, _) = agent("alice", None, MediaCapabilities::default()).await;
    let (bob, _) = agent_at("bob", None, MediaCapabilities::default(), 44100).await;
    let call = Inviter::new(&alice, uri(&bob, "bob"), Default::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(&bob).await;
    let e = inv.accept(Default::default()).await.unwrap_err();
    assert!(e.to_string().contains("44100"), "{e}");
    let end = tokio::time::timeout(Duration::from_secs(5), call.terminated())
        .await
        .expect("the caller is told");
    assert!(matches!(end, EndReason::Rejected { .. }), "{end:?}");
    alice.stop().await;
    bob.stop().await;
}
