//! Fuzzes the media layer with arbitrary bytes: SDP parsing (and re-parsing what we
//! serialise), offer/answer on a hostile offer or answer, RTP and RTCP parsing, and a whole
//! `AudioStream` fed the input as datagrams with timer ticks in between. Never a panic, and
//! the stream's queues stay bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipua_media::audio::{NullSink, Silence};
use sipua_media::jitter::JitterConfig;
use sipua_media::rtp::{rtcp, RtpPacket};
use sipua_media::sdp::offer_answer::{LocalMedia, MediaCapabilities, OfferAnswer};
use sipua_media::sdp::SessionDescription;
use sipua_media::stream::{AudioStream, StreamConfig};

fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(sdp) = SessionDescription::parse(&text) else {
        return;
    };
    // what we write we read back
    let again = SessionDescription::parse(&sdp.to_string()).expect("our own SDP parses");
    assert_eq!(again.media.len(), sdp.media.len());
    let local = LocalMedia::new("127.0.0.1".parse().unwrap(), 40000);
    // as an offer
    let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
    if oa.receive_offer(&sdp).is_ok() {
        if let Ok((answer, _)) = oa.create_answer(&local) {
            assert_eq!(answer.media.len(), sdp.media.len());
            SessionDescription::parse(&answer.to_string()).expect("our answer parses");
        }
    }
    // as an answer to our offer, then a forked one
    let mut oa = OfferAnswer::new(MediaCapabilities::default(), 2);
    let _ = oa.create_offer(&local);
    let _ = oa.receive_answer(&sdp);
    let _ = oa.receive_forked_answer(&sdp);
}

fn stream(data: &[u8]) {
    let t0 = Instant::now();
    let peer: SocketAddr = "127.0.0.1:30000".parse().unwrap();
    let mut oa = OfferAnswer::new(MediaCapabilities::default(), 3);
    let offer = oa.create_offer(&LocalMedia::new("127.0.0.1".parse().unwrap(), 20000));
    let answer = SessionDescription::parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    )
    .unwrap();
    let _ = offer;
    let negotiated = oa.receive_answer(&answer).unwrap();
    let config = StreamConfig {
        ssrc: 1,
        cname: "fuzz".into(),
        initial_sequence: 0,
        initial_timestamp: 0,
        jitter: JitterConfig::default(),
        wallclock: Duration::from_secs(1_700_000_000),
        seed: 7,
        verified: data.first().is_some_and(|b| b & 1 == 1),
        silent_peer_limit: Some(Duration::from_millis(300)),
        // wideband audio runs G.711 through the rate converter
        audio_rate: if data.first().is_some_and(|b| b & 2 == 2) {
            16000
        } else {
            8000
        },
        opus_complexity: None,
    };
    let mut s = AudioStream::new(config, negotiated, Box::new(Silence), Box::new(NullSink), t0)
        .unwrap();
    // the input as datagrams: [len, flags, bytes...]
    let mut now = t0;
    let mut rest = data;
    while let [len, flags, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (packet, next) = tail.split_at(n);
        now += Duration::from_millis(u64::from(flags & 0x3f));
        if flags & 0x40 != 0 {
            s.handle_rtcp(now, peer, packet);
        } else {
            s.handle_rtp(now, peer, packet);
        }
        if flags & 0x80 != 0 {
            s.send_dtmf("1#");
        }
        s.handle_timeout(now);
        let mut sent = 0;
        while s.poll_transmit().is_some() {
            sent += 1;
        }
        assert!(sent <= 256, "{sent} datagrams queued");
        while s.poll_event().is_some() {}
        rest = next;
    }
    s.close(now);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => sdp(body),
        1 => {
            let _ = RtpPacket::parse(body);
            let _ = rtcp::parse_compound(body);
        }
        _ => stream(body),
    }
});
