//! WebRTC calls between two sipua user agents on loopback ([`WebRtcAudio`] on both sides):
//! the SDP is a browser's kind (`UDP/TLS/RTP/SAVPF`, DTLS fingerprint and setup, ICE
//! credentials and a host candidate, rtcp-mux, no SDES key), ICE and DTLS-SRTP complete, and
//! the audio one side plays is what the other records (by correlation and SNR), with the offer
//! in the INVITE and in the 200. The browser itself is the interop tests' part.
#![cfg(feature = "webrtc")]

use std::sync::Arc;
use std::time::Duration;

use sipua::{
    EndReason, Invitation, Inviter, InviterOptions, Listen, SessionDescriptionHandlerOptions,
    SessionInviteOptions, UserAgent, UserAgentOptions,
};
mod common;

use common::{next, play_and_record, uri, Heard};
use sipua_media::analysis;
use sipua_media::audio::{demo_melody, AudioSource, Tone};
use sipua_media::sdp::offer_answer::{Codec, MediaCapabilities};
use sipua_media::webrtc::is_webrtc_sdp;
use sipua_media::{SessionAudio, WebRtcAudioFactory, WebRtcAudioOptions};

/// A user agent on loopback whose WebRTC calls offer and accept `codecs`, play `play` and
/// record into memory.
async fn agent(user: &str, play: Vec<i16>, codecs: Vec<Codec>) -> (UserAgent, Heard) {
    agent_at(user, play, codecs, 8000).await
}

/// [`agent`] with its audio at `audio_rate` Hz.
async fn agent_at(
    user: &str,
    play: Vec<i16>,
    codecs: Vec<Codec>,
    audio_rate: u32,
) -> (UserAgent, Heard) {
    let (audio, heard) = play_and_record(Some(play));
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: user.into(),
        session_description_handler_factory: Arc::new(WebRtcAudioFactory::new(
            WebRtcAudioOptions {
                capabilities: MediaCapabilities {
                    codecs,
                    ..Default::default()
                },
                audio,
                audio_rate,
                ..Default::default()
            },
        )),
        ..Default::default()
    });
    ua.start().await.unwrap();
    (ua, heard)
}

/// Alice calls Bob, Bob answers, and the call is up on both sides.
async fn connect(alice: &UserAgent, bob: &UserAgent) -> (Inviter, Invitation) {
    let call = Inviter::new(alice, uri(bob, "bob"), Default::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(bob).await;
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    (call, inv)
}

/// What a browser needs in a description, and what it must not get.
fn assert_browser_sdp(sdp: &str) {
    assert!(is_webrtc_sdp(sdp.as_bytes()), "{sdp}");
    for needed in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:sha-256 ",
        "a=setup:",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=rtcp-mux",
        "a=mid:",
        "a=group:BUNDLE",
        "a=candidate:",
        "127.0.0.1",
    ] {
        assert!(sdp.contains(needed), "no {needed:?} in\n{sdp}");
    }
    assert!(
        !sdp.contains("a=crypto"),
        "an SDES key over DTLS-SRTP:\n{sdp}"
    );
}

/// What `heard` must be like to be `sent`: G.711 keeps the waveform (correlation above 0.98,
/// SNR above 30 dB); Opus, a perceptual codec at 8 kHz here, keeps its shape (above 0.9).
fn assert_heard(sent: &[i16], heard: &Heard, codec: &str) {
    let heard = heard.lock().unwrap().clone();
    let (_, corr) = analysis::best_alignment(sent, &heard, 16000);
    let snr = analysis::snr_db(sent, &heard);
    if codec == "opus" {
        assert!(corr > 0.9, "correlation {corr}");
    } else {
        assert!(corr > 0.98, "correlation {corr}");
        assert!(snr > 30.0, "SNR {snr} dB");
    }
}

async fn audio_flows_both_ways(without_sdp: bool, codec: Codec) {
    let name = codec.encoding.clone();
    let melody = demo_melody();
    let tone: Vec<i16> = {
        let mut t = Tone::new(697.0, 6000, 8000);
        let mut v = vec![0i16; 16000];
        t.read(&mut v);
        v
    };
    let (alice, alice_heard) = agent("alice", melody.clone(), vec![codec.clone()]).await;
    let (bob, bob_heard) = agent("bob", tone.clone(), vec![codec]).await;
    let call = Inviter::new(
        &alice,
        uri(&bob, "bob"),
        InviterOptions {
            invite_without_sdp: without_sdp,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = next(&bob).await;
    if !without_sdp {
        assert_browser_sdp(&String::from_utf8_lossy(inv.request().body()));
    }
    inv.accept(Default::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), call.established())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let (a, b) = (call.audio().unwrap(), inv.audio().unwrap());
    call.bye().await.unwrap();
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    a.closed().await;
    b.closed().await;
    assert_heard(&melody, &bob_heard, &name);
    assert_heard(&tone, &alice_heard, &name);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.codec, name, "{sa:?}");
    assert!(
        sa.packets_received >= 100 && sb.packets_received >= 100,
        "{sa:?} {sb:?}"
    );
    // on loopback nothing is lost, and the count says so
    assert_eq!((sa.packets_lost, sb.packets_lost), (0, 0), "{sa:?} {sb:?}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_call_carries_audio_both_ways_with_the_offer_in_the_invite() {
    audio_flows_both_ways(false, Codec::pcmu()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_call_carries_audio_both_ways_with_the_offer_in_the_200() {
    audio_flows_both_ways(true, Codec::pcmu()).await;
}

#[cfg(feature = "opus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_call_carries_opus_both_ways() {
    audio_flows_both_ways(false, sipua_media::codec::opus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_goes_over_webrtc_as_telephone_events() {
    let (alice, _) = agent("alice", Vec::new(), vec![Codec::pcmu()]).await;
    let (bob, _) = agent("bob", Vec::new(), vec![Codec::pcmu()]).await;
    let (call, inv) = connect(&alice, &bob).await;
    let mut events = inv.audio().unwrap().events();
    // DTLS first: digits sent before the keys exist would go nowhere
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.send_dtmf("5*#A").await.unwrap();
    let mut digits = String::new();
    while digits.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Ok(sipua_media::MediaEvent::Dtmf { digit, duration_ms })) => {
                assert!((80..=120).contains(&duration_ms), "{duration_ms} ms");
                digits.push(digit);
            }
            Ok(Ok(_)) => {}
            other => panic!("no DTMF event: {other:?}, so far {digits:?}"),
        }
    }
    assert_eq!(digits, "5*#A");
    assert!(
        call.send_dtmf("12x").await.is_err(),
        "invalid digits are an error"
    );
    call.bye().await.unwrap();
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_renegotiate_a_webrtc_call() {
    let (alice, _) = agent("alice", Vec::new(), vec![Codec::pcmu()]).await;
    let (bob, _) = agent("bob", Vec::new(), vec![Codec::pcmu()]).await;
    let (call, inv) = connect(&alice, &bob).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = |d: Option<sipua::BodyAndContentType>| {
        String::from_utf8_lossy(&d.expect("a description").body).into_owned()
    };
    // Alice holds: she offers sendonly, Bob answers recvonly (RFC 3264 §8.4)
    call.session()
        .invite(SessionInviteOptions {
            session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(text(inv.remote_description()).contains("a=sendonly"));
    assert!(text(call.remote_description()).contains("a=recvonly"));
    // and resumes: both ways again, and the audio flows again both ways
    call.session().invite(Default::default()).await.unwrap();
    assert!(text(inv.remote_description()).contains("a=sendrecv"));
    assert!(text(call.remote_description()).contains("a=sendrecv"));
    let (a, b) = (call.audio().unwrap(), inv.audio().unwrap());
    let before = (a.stats().packets_received, b.stats().packets_received);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = (a.stats().packets_received, b.stats().packets_received);
    assert!(
        after.0 >= before.0 + 40 && after.1 >= before.1 + 40,
        "{before:?} {after:?}"
    );
    // Bob holds too, from his side
    inv.session()
        .invite(SessionInviteOptions {
            session_description_handler_options: Some(SessionDescriptionHandlerOptions::hold()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(text(call.remote_description()).contains("a=sendonly"));
    call.bye().await.unwrap();
    alice.stop().await;
    bob.stop().await;
}

#[test]
fn a_plain_rtp_offer_is_not_taken_for_webrtc() {
    let avp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 4000 RTP/AVP 0\r\n";
    assert!(!is_webrtc_sdp(avp.as_bytes()));
    let savpf = avp.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
    assert!(is_webrtc_sdp(savpf.as_bytes()));
}

/// At 48 kHz with Opus, the band a browser sends (here a 7 kHz and a 9 kHz tone, far past
/// narrowband's 4 kHz) goes across both ways at its level.
#[cfg(feature = "opus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48_khz_webrtc_call_carries_the_full_band_both_ways() {
    use common::{heard_tone, tone_at};
    let opus = vec![sipua_media::codec::opus()];
    let (alice, alice_heard) =
        agent_at("alice", tone_at(7000.0, 48000, 3.0), opus.clone(), 48000).await;
    let (bob, bob_heard) = agent_at("bob", tone_at(9000.0, 48000, 3.0), opus, 48000).await;
    let (call, inv) = connect(&alice, &bob).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (a, b) = (call.audio().unwrap(), inv.audio().unwrap());
    call.bye().await.unwrap();
    a.closed().await;
    b.closed().await;
    let candidates = [1000.0, 3000.0, 7000.0, 9000.0];
    let (f, level) = heard_tone(&bob_heard, 48000, &candidates);
    assert_eq!(f, Some(7000.0), "bob heard level {level}");
    assert!(level > 0.5, "bob heard level {level}");
    let (f, level) = heard_tone(&alice_heard, 48000, &candidates);
    assert_eq!(f, Some(9000.0), "alice heard level {level}");
    assert!(level > 0.5, "alice heard level {level}");
    assert_eq!((a.stats().packets_lost, b.stats().packets_lost), (0, 0));
    alice.stop().await;
    bob.stop().await;
}
