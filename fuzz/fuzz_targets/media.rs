//! Fuzzes the media layer with arbitrary bytes: SDP parsing (and re-parsing what we
//! serialise), offer/answer on a hostile offer or answer (plain, and with SDES keys allowed),
//! RTP and RTCP parsing, SRTP and SRTCP unprotect on forged packets, and a whole
//! `AudioStream` (plain or SRTP) fed the input as datagrams with timer ticks in between.
//! Never a panic, and the stream's queues stay bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipua_media::audio::{NullSink, Silence};
use sipua_media::jitter::JitterConfig;
use sipua_media::rtp::{rtcp, RtpPacket};
use sipua_media::sdp::offer_answer::{
    LocalMedia, MediaCapabilities, OfferAnswer, SdesKeys, SdesSetup,
};
use sipua_media::srtp::{MasterKey, SrtpContext, SrtpSuite};
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
    for sdes in [
        None,
        Some(SdesSetup {
            key: [9; 30],
            offer: true,
            required: false,
        }),
    ] {
        // as an offer
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 1);
        oa.set_sdes(sdes.clone());
        if oa.receive_offer(&sdp).is_ok() {
            if let Ok((answer, negotiated)) = oa.create_answer(&local) {
                assert_eq!(answer.media.len(), sdp.media.len());
                SessionDescription::parse(&answer.to_string()).expect("our answer parses");
                // keys only when SDES was allowed
                assert!(negotiated.srtp.is_none() || sdes.is_some());
            }
        }
        // as an answer to our offer, then a forked one
        let mut oa = OfferAnswer::new(MediaCapabilities::default(), 2);
        oa.set_sdes(sdes);
        let _ = oa.create_offer(&local);
        let _ = oa.receive_answer(&sdp);
        let _ = oa.receive_forked_answer(&sdp);
    }
}

/// Forged SRTP and SRTCP: refused, never a panic, and a refused packet is left as it was.
fn srtp(data: &[u8]) {
    let suite = if data.first().is_some_and(|b| b & 1 == 1) {
        SrtpSuite::AesCm128HmacSha1_32
    } else {
        SrtpSuite::AesCm128HmacSha1_80
    };
    let mut rx = SrtpContext::new(suite, &MasterKey([5; 30])).unwrap();
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (packet, next) = tail.split_at(n);
        for rtcp in [false, true] {
            let mut p = packet.to_vec();
            let r = if rtcp {
                rx.unprotect_rtcp(&mut p)
            } else {
                rx.unprotect_rtp(&mut p)
            };
            if r.is_err() {
                assert_eq!(p, packet, "a refused packet is untouched");
            }
        }
        rest = next;
    }
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
    // SRTP on the stream for some inputs: every datagram then goes through unprotect
    let negotiated = if data.first().is_some_and(|b| b & 4 == 4) {
        sipua_media::sdp::offer_answer::Negotiated {
            srtp: Some(SdesKeys {
                suite: "AES_CM_128_HMAC_SHA1_80",
                local_key: [1; 30],
                remote_key: [2; 30],
            }),
            ..negotiated
        }
    } else {
        negotiated
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
    match selector % 4 {
        0 => sdp(body),
        1 => {
            let _ = RtpPacket::parse(body);
            let _ = rtcp::parse_compound(body);
        }
        2 => srtp(body),
        _ => stream(body),
    }
});
