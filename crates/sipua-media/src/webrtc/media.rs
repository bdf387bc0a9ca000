//! The media of one WebRTC call without I/O: [`WebRtcMedia`] wraps str0m's `Rtc` (ICE, DTLS,
//! SRTP: RFC 8445, 7675, 5764, 7983) with what a call adds to it: 20 ms audio frames through the
//! codecs, RFC 4733 telephone-events both ways, loss counting, and the peer's leaving (consent
//! expired, DTLS closed) as events. Time and datagrams are inputs, as in the rest of sipua's
//! core: `handle_datagram(now, …)`, `handle_timeout(now)`, then `poll_transmit()`,
//! `poll_event()` and `poll_timeout()`. The tokio task in `webrtc/mod.rs` gives it a socket and
//! a clock; the tests give it a simulated lossy network and virtual time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::format::Codec as WebCodec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt, TelephoneEvent};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use crate::codec::{CodecSettings, MediaCodec};
use crate::dtmf::DtmfReceiver;
use crate::resample::frame_samples;
use crate::sdp::offer_answer::Codec;
use crate::stream::MediaStats;
use crate::AudioIo;

/// The packet time both ways.
const FRAME: Duration = Duration::from_millis(20);
/// How late a frame may be sent; a later one is skipped (the RTP clock still moves on).
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
/// How long each digit we send lasts, and the silence after it (RFC 4733 §2.5.1.2 suggests
/// at least 40 ms between events; str0m wants 50).
const DIGIT: Duration = Duration::from_millis(100);
const DIGIT_GAP: Duration = Duration::from_millis(70);
/// Digits waiting to be sent at most.
const MAX_QUEUED_DIGITS: usize = 64;
/// Datagrams or events waiting to be drained at most; older ones are dropped beyond it.
const QUEUE_LIMIT: usize = 256;

/// Something the call's owner must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebRtcEvent {
    /// ICE and DTLS are up: media flows.
    Connected,
    /// A DTMF digit arrived (RFC 4733), with how long it lasted.
    Dtmf {
        /// The digit, `0-9*#A-D`.
        digit: char,
        /// Its duration in milliseconds.
        duration_ms: u32,
    },
    /// The peer stopped answering ICE consent checks (RFC 7675: 30 s): gone without a word.
    ConsentLost,
    /// The peer closed its DTLS connection (a hang-up beside its BYE, or a closed tab).
    PeerClosed,
}

/// The sending side: the payload type and codec chosen, and where the RTP clock is.
struct Sender {
    pt: Pt,
    codec: MediaCodec,
    clock: Frequency,
    timestamp: u64,
}

/// Loss from the sequence numbers str0m extends (RFC 3550 A.3): the span seen so far against
/// the packets that arrived (audio and telephone-events: they share the sequence); and the
/// interarrival jitter of the audio (RFC 3550 A.8).
#[derive(Default)]
struct SeqCount {
    first: Option<u64>,
    last: u64,
    arrived: u64,
    /// When the first audio packet arrived: arrival times count from it.
    base: Option<Instant>,
    /// The last audio packet's transit time (arrival less RTP time), in seconds.
    transit: Option<f64>,
    /// The smoothed jitter, in seconds.
    jitter: f64,
}

impl SeqCount {
    /// Updates the jitter with an audio packet sent at RTP time `sent` that arrived at
    /// `arrived`: J += (|D| - J) / 16, D the change in transit time.
    fn timing(&mut self, arrived: Instant, sent: MediaTime, stats: &mut MediaStats) {
        let base = *self.base.get_or_insert(arrived);
        let transit = arrived.saturating_duration_since(base).as_secs_f64() - sent.as_seconds();
        if let Some(previous) = self.transit {
            let d = (transit - previous).abs();
            self.jitter += (d - self.jitter) / 16.0;
            stats.jitter_ms = (self.jitter * 1000.0) as f32;
        }
        self.transit = Some(transit);
    }

    /// Counts the packets of `range` and updates the loss in `stats`; returns how many.
    fn saw(
        &mut self,
        range: &std::ops::RangeInclusive<str0m::rtp::SeqNo>,
        stats: &mut MediaStats,
    ) -> u64 {
        let (lo, hi) = (**range.start(), **range.end());
        let n = hi.saturating_sub(lo) + 1;
        self.arrived += n;
        let first = self.first.map_or(lo, |f| f.min(lo));
        self.first = Some(first);
        self.last = self.last.max(hi);
        let expected = self.last.saturating_sub(first) + 1;
        let lost = expected.saturating_sub(self.arrived);
        stats.packets_lost = lost as i64;
        stats.loss_fraction = lost as f32 / expected as f32;
        n
    }
}

/// Our codec for what str0m negotiated.
fn codec_of(codec: WebCodec) -> Option<Codec> {
    match codec {
        WebCodec::PCMU => Some(Codec::pcmu()),
        WebCodec::PCMA => Some(Codec::pcma()),
        #[cfg(feature = "opus")]
        WebCodec::Opus => Some(crate::codec::opus()),
        _ => None,
    }
}

/// One WebRTC call's media (see the module documentation).
pub struct WebRtcMedia {
    rtc: Rtc,
    /// Our ICE candidate (what str0m matches received datagrams against).
    candidate: SocketAddr,
    /// Our audio's media id, once known.
    mid: Option<Mid>,
    audio: AudioIo,
    settings: CodecSettings,
    sender: Option<Sender>,
    decoders: Vec<(Pt, MediaCodec)>,
    frame: Vec<i16>,
    decoded: Vec<i16>,
    payload: Vec<u8>,
    stats: MediaStats,
    dtmf_rx: Option<DtmfReceiver>,
    seq: SeqCount,
    dtmf_queue: VecDeque<u8>,
    next_digit_at: Instant,
    /// When the next audio frame is due.
    next_frame: Instant,
    /// str0m's next deadline.
    rtc_timeout: Instant,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<WebRtcEvent>,
    /// str0m stopped (an error, or we closed): nothing more happens.
    ended: bool,
}

impl std::fmt::Debug for WebRtcMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcMedia")
            .field("candidate", &self.candidate)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WebRtcMedia {
    /// The media of a call whose `rtc` has its offer and answer applied (or is about to),
    /// sending from `candidate`, with frames to and from `audio` at `settings`' rate.
    pub fn new(
        rtc: Rtc,
        candidate: SocketAddr,
        mid: Option<Mid>,
        audio: AudioIo,
        settings: CodecSettings,
        now: Instant,
    ) -> WebRtcMedia {
        let frame_len = frame_samples(settings.audio_rate);
        let mut m = WebRtcMedia {
            rtc,
            candidate,
            mid,
            audio,
            settings,
            sender: None,
            decoders: Vec::new(),
            frame: vec![0; frame_len],
            decoded: Vec::with_capacity(frame_len * 6),
            payload: Vec::with_capacity(1500),
            stats: MediaStats {
                srtp: Some("DTLS-SRTP"),
                // WebRTC always carries RTCP on its one port
                rtcp_mux: true,
                ..MediaStats::default()
            },
            dtmf_rx: None,
            seq: SeqCount::default(),
            dtmf_queue: VecDeque::new(),
            next_digit_at: now,
            next_frame: now,
            rtc_timeout: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
        };
        m.drain(now);
        m
    }

    /// A datagram from `source` on our socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) {
        if self.ended {
            return;
        }
        let Ok(contents) = bytes.try_into() else {
            self.stats.invalid += 1;
            return;
        };
        if self.stats.remote.is_none() {
            self.stats.remote = Some(source);
        }
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                // str0m matches this against our candidate: a socket on a wildcard address
                // reports the announced one
                destination: self.candidate,
                contents,
            },
        );
        if self.rtc.handle_input(input).is_err() {
            self.ended = true;
        }
        self.drain(now);
    }

    /// Advances to `now`: str0m's timers, and every audio frame that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if now >= self.rtc_timeout {
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.ended = true;
                return;
            }
            self.drain(now);
        }
        while !self.ended && self.next_frame <= now {
            let late = now.saturating_duration_since(self.next_frame) > MAX_CATCH_UP;
            self.next_frame += FRAME;
            if late {
                // too late to matter: skipped, the RTP clock still moving on
                if let Some(s) = self.sender.as_mut() {
                    s.timestamp += u64::from(s.codec.timestamp_step());
                }
                continue;
            }
            self.send_frame(now);
            self.drain(now);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.ended).then(|| self.rtc_timeout.min(self.next_frame))
    }

    /// The next datagram to send: where, and what.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next thing the owner must act on.
    pub fn poll_event(&mut self) -> Option<WebRtcEvent> {
        self.events.pop_front()
    }

    /// The counters so far.
    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }

    /// Whether the call's media has stopped for good.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Queues DTMF digits (already checked) as RFC 4733 events, a few seconds' worth at most.
    pub fn send_dtmf(&mut self, digits: &str) {
        for d in digits.chars().filter_map(crate::dtmf::digit_to_event) {
            if self.dtmf_queue.len() < MAX_QUEUED_DIGITS {
                self.dtmf_queue.push_back(d);
            }
        }
    }

    /// Runs a renegotiation step on the `Rtc` (with our media id), then takes its output.
    pub fn with_rtc<T>(&mut self, now: Instant, f: impl FnOnce(&mut Rtc, Option<Mid>) -> T) -> T {
        let t = f(&mut self.rtc, self.mid);
        self.drain(now);
        t
    }

    /// Closes the connection gracefully (RTCP BYE and a DTLS close_notify go out, so that
    /// the peer knows at once) and finishes the audio sink.
    pub fn close(&mut self, now: Instant) {
        if !self.ended {
            if self.rtc.close().is_err() {
                self.rtc.disconnect();
            }
            self.drain(now);
            self.ended = true;
        }
        self.audio.sink.finish();
    }

    /// Takes everything str0m has to say after an input, up to its next deadline.
    fn drain(&mut self, now: Instant) {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => {
                    self.ended = true;
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    if self.transmits.len() >= QUEUE_LIMIT {
                        self.transmits.pop_front();
                    }
                    self.transmits.push_back((t.destination, t.contents.into()));
                }
                Output::Event(e) => self.on_event(now, e),
            }
        }
    }

    fn push_event(&mut self, e: WebRtcEvent) {
        if self.events.len() >= QUEUE_LIMIT {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => self.mid = Some(m.mid),
            Event::Connected => self.push_event(WebRtcEvent::Connected),
            Event::MediaData(d) if d.params.spec().codec == WebCodec::Tele => {
                // telephone-events share the audio's SSRC and sequence numbers
                self.seq.saw(&d.seq_range, &mut self.stats);
                // an RFC 4733 report (str0m hands over the first of a packet's)
                let rate = d.params.spec().clock_rate.get();
                let rx = self.dtmf_rx.get_or_insert_with(|| DtmfReceiver::new(rate));
                if let Some(digit) = rx.on_packet(d.time.numer() as u32, &d.data, now) {
                    self.stats.dtmf_received += 1;
                    self.push_event(WebRtcEvent::Dtmf {
                        digit: digit.digit,
                        duration_ms: digit.duration_ms,
                    });
                }
            }
            Event::MediaData(d) => {
                self.stats.packets_received += self.seq.saw(&d.seq_range, &mut self.stats);
                self.seq.timing(d.network_time, d.time, &mut self.stats);
                self.stats.octets_received += d.data.len() as u64;
                let known = self.decoders.iter().position(|(pt, _)| *pt == d.pt);
                let settings = self.settings;
                let index = known.or_else(|| {
                    let codec =
                        MediaCodec::with_settings(&codec_of(d.params.spec().codec)?, settings)
                            .ok()?;
                    self.decoders.push((d.pt, codec));
                    Some(self.decoders.len() - 1)
                });
                if let Some((_, dec)) = index.and_then(|i| self.decoders.get_mut(i)) {
                    self.decoded.clear();
                    dec.decode(&d.data, &mut self.decoded);
                    for chunk in self.decoded.chunks(self.frame.len()) {
                        self.audio.sink.write(chunk);
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // the peer is gone without a word: its consent lapsed (RFC 7675)
                self.push_event(WebRtcEvent::ConsentLost);
                self.ended = true;
            }
            Event::Closed => {
                self.push_event(WebRtcEvent::PeerClosed);
                self.ended = true;
            }
            _ => {}
        }
    }

    /// One frame time: a frame of audio (or a DTMF event) out.
    fn send_frame(&mut self, now: Instant) {
        // the end of a digit the peer's receiver reports once, then the gap
        if let Some(digit) = self.dtmf_rx.as_mut().and_then(|rx| rx.handle_timeout(now)) {
            self.stats.dtmf_received += 1;
            self.push_event(WebRtcEvent::Dtmf {
                digit: digit.digit,
                duration_ms: digit.duration_ms,
            });
        }
        let Some(m) = self.mid else { return };
        let Some(writer) = self.rtc.writer(m) else {
            return;
        };
        if self.sender.is_none() {
            let settings = self.settings;
            self.sender = writer.payload_params().find_map(|p| {
                let spec = p.spec();
                let codec = MediaCodec::with_settings(&codec_of(spec.codec)?, settings).ok()?;
                Some(Sender {
                    pt: p.pt(),
                    codec,
                    clock: spec.clock_rate,
                    timestamp: 0,
                })
            });
            if let Some(s) = &self.sender {
                self.stats.codec = s.codec.name().to_owned();
            }
        }
        let Some(s) = self.sender.as_mut() else {
            return;
        };
        let tone = if now >= self.next_digit_at {
            self.dtmf_queue.pop_front()
        } else {
            None
        };
        let writer = match tone {
            Some(event) => {
                self.next_digit_at = now + DIGIT + DIGIT_GAP;
                self.stats.dtmf_sent += 1;
                writer.telephone_event(TelephoneEvent {
                    event,
                    end: true,
                    volume: 10,
                    duration: DIGIT,
                })
            }
            None => writer,
        };
        self.audio.source.read(&mut self.frame);
        self.payload.clear();
        s.codec.encode(&self.frame, &mut self.payload);
        let at = MediaTime::new(s.timestamp, s.clock);
        s.timestamp += u64::from(s.codec.timestamp_step());
        if writer.write(s.pt, now, at, self.payload.clone()).is_ok() {
            self.stats.packets_sent += 1;
            self.stats.octets_sent += self.payload.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two calls' media against each other over a simulated network in virtual time: loss,
    //! delay and reordering, the DTLS handshake's first flights lost, a peer that vanishes
    //! (ICE consent expiry, RFC 7675) and one that closes.

    use super::*;
    use crate::analysis;
    use crate::audio::{MemorySink, NullSink, Silence, Tone};
    use crate::sdp::offer_answer::MediaCapabilities;
    use crate::webrtc::{build_rtc, WebRtcAudioOptions};
    use std::sync::{Arc, Mutex};
    use str0m::media::Direction;

    const A: &str = "10.0.0.1:5000";
    const B: &str = "10.0.0.2:6000";

    /// What the network does to a datagram.
    #[derive(Clone, Copy)]
    struct Conditions {
        /// Chance each datagram is lost.
        loss: f64,
        /// Extra delay, up to this, on top of 10 ms (so datagrams overtake each other).
        jitter_ms: u64,
        /// DTLS datagrams (RFC 7983: first byte 20-63) lost first, each way.
        dtls_lost: usize,
        /// Nothing gets through any more.
        cut: bool,
    }

    impl Default for Conditions {
        fn default() -> Self {
            Conditions {
                loss: 0.0,
                jitter_ms: 0,
                dtls_lost: 0,
                cut: false,
            }
        }
    }

    struct Sim {
        a: WebRtcMedia,
        b: WebRtcMedia,
        now: Instant,
        /// (delivery time, to B?, datagram)
        flight: Vec<(Instant, bool, Vec<u8>)>,
        rng: u64,
        net: Conditions,
        dtls_dropped: [usize; 2],
        a_events: Vec<(Instant, WebRtcEvent)>,
        b_events: Vec<(Instant, WebRtcEvent)>,
    }

    impl Sim {
        /// A calls B (the offer made by A's `Rtc`, answered by B's) with PCMU; A plays
        /// `play`, B records into memory.
        fn new(
            play: Box<dyn crate::audio::AudioSource>,
            net: Conditions,
        ) -> (Sim, Arc<Mutex<Vec<i16>>>) {
            let now = Instant::now();
            let options = WebRtcAudioOptions {
                capabilities: MediaCapabilities {
                    codecs: vec![Codec::pcmu()],
                    ..Default::default()
                },
                ..Default::default()
            };
            let (ca, cb) = (A.parse().unwrap(), B.parse().unwrap());
            let mut a = build_rtc(&options, ca, now).unwrap();
            let mut b = build_rtc(&options, cb, now).unwrap();
            let mut api = a.sdp_api();
            let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = api.apply().unwrap();
            let answer = b.sdp_api().accept_offer(offer).unwrap();
            a.sdp_api().accept_answer(pending, answer).unwrap();
            let (sink, heard) = MemorySink::new(8000 * 120);
            let a = WebRtcMedia::new(
                a,
                ca,
                Some(mid),
                AudioIo::new(play, Box::new(NullSink)),
                CodecSettings::default(),
                now,
            );
            let b = WebRtcMedia::new(
                b,
                cb,
                None,
                AudioIo::new(Box::new(Silence), Box::new(sink)),
                CodecSettings::default(),
                now,
            );
            let sim = Sim {
                a,
                b,
                now,
                flight: Vec::new(),
                rng: 0x2545_f491_4f6c_dd1d,
                net,
                dtls_dropped: [0, 0],
                a_events: Vec::new(),
                b_events: Vec::new(),
            };
            (sim, heard)
        }

        fn random(&mut self) -> f64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % 1_000_000) as f64 / 1_000_000.0
        }

        /// Runs both sides for `d` of virtual time.
        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            loop {
                for to_b in [true, false] {
                    loop {
                        let t = if to_b {
                            self.a.poll_transmit()
                        } else {
                            self.b.poll_transmit()
                        };
                        let Some((_, bytes)) = t else { break };
                        let side = usize::from(to_b);
                        let dtls = bytes.first().is_some_and(|b| (20..=63).contains(b));
                        if dtls && self.dtls_dropped[side] < self.net.dtls_lost {
                            self.dtls_dropped[side] += 1;
                            continue;
                        }
                        if self.net.cut || self.random() < self.net.loss {
                            continue;
                        }
                        let jitter = (self.random() * self.net.jitter_ms as f64) as u64;
                        let at = self.now + Duration::from_millis(10 + jitter);
                        self.flight.push((at, to_b, bytes));
                    }
                }
                while let Some(e) = self.a.poll_event() {
                    self.a_events.push((self.now, e));
                }
                while let Some(e) = self.b.poll_event() {
                    self.b_events.push((self.now, e));
                }
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .chain(self.flight.iter().map(|f| f.0))
                    .min()
                    .unwrap_or(end);
                if next >= end {
                    self.now = end;
                    return;
                }
                self.now = next.max(self.now);
                let now = self.now;
                let mut i = 0;
                while i < self.flight.len() {
                    if self.flight[i].0 <= now {
                        let (_, to_b, bytes) = self.flight.swap_remove(i);
                        if to_b {
                            self.b.handle_datagram(now, A.parse().unwrap(), &bytes);
                        } else {
                            self.a.handle_datagram(now, B.parse().unwrap(), &bytes);
                        }
                    } else {
                        i += 1;
                    }
                }
                self.a.handle_timeout(now);
                self.b.handle_timeout(now);
            }
        }

        /// When `side`'s first `event` came, if it did.
        fn when(events: &[(Instant, WebRtcEvent)], event: &WebRtcEvent) -> Option<Instant> {
            events.iter().find(|(_, e)| e == event).map(|(t, _)| *t)
        }
    }

    #[test]
    fn a_call_over_a_lossy_reordering_network_connects_and_carries_audio() {
        let net = Conditions {
            loss: 0.1,
            jitter_ms: 30,
            ..Default::default()
        };
        let (mut sim, heard) = Sim::new(Box::new(Tone::new(440.0, 8000, 8000)), net);
        let start = sim.now;
        sim.run_for(Duration::from_secs(10));
        let connected = Sim::when(&sim.a_events, &WebRtcEvent::Connected).expect("A connects");
        Sim::when(&sim.b_events, &WebRtcEvent::Connected).expect("B connects");
        assert!(
            connected - start < Duration::from_secs(5),
            "{:?}",
            connected - start
        );
        let s = sim.b.stats().clone();
        // about 400 packets in 8 s or more of media, a tenth of them lost, and counted so
        assert!(s.packets_received > 300, "{s:?}");
        assert!((0.04..0.2).contains(&s.loss_fraction), "{s:?}");
        // 10-40 ms of delay: the jitter is some milliseconds, not zero and not hundreds
        assert!((1.0..30.0).contains(&s.jitter_ms), "{s:?}");
        let heard = heard.lock().unwrap().clone();
        assert_eq!(
            analysis::dominant_frequency(&heard, 8000, &[300.0, 440.0, 1000.0]),
            Some(440.0)
        );
        assert_eq!(sim.a.stats().codec, "PCMU");
        assert!(!sim.a.is_ended() && !sim.b.is_ended());
    }

    #[test]
    fn dtls_retransmits_its_lost_first_flights() {
        let net = Conditions {
            dtls_lost: 2,
            ..Default::default()
        };
        let (mut sim, _) = Sim::new(Box::new(Silence), net);
        let start = sim.now;
        sim.run_for(Duration::from_secs(20));
        assert_eq!(
            sim.dtls_dropped,
            [2, 2],
            "the handshake's datagrams were lost"
        );
        let a = Sim::when(&sim.a_events, &WebRtcEvent::Connected).expect("A connects");
        let b = Sim::when(&sim.b_events, &WebRtcEvent::Connected).expect("B connects");
        // not at once: only after the retransmission timers fired (1 s and more, RFC 6347)
        let took = a.max(b) - start;
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_secs(15), "{took:?}");
        assert!(sim.b.stats().packets_received > 0);
        // a steady 10 ms of delay: no jitter
        assert!(sim.b.stats().jitter_ms < 0.5, "{:?}", sim.b.stats());
    }

    #[test]
    fn a_peer_that_vanishes_is_noticed_by_consent_expiry() {
        let (mut sim, _) = Sim::new(
            Box::new(Tone::new(440.0, 8000, 8000)),
            Conditions::default(),
        );
        sim.run_for(Duration::from_secs(3));
        Sim::when(&sim.a_events, &WebRtcEvent::Connected).expect("A connects");
        // the peer's network goes: nothing arrives, not even consent responses
        sim.net.cut = true;
        let cut = sim.now;
        sim.run_for(Duration::from_secs(45));
        let lost =
            Sim::when(&sim.a_events, &WebRtcEvent::ConsentLost).expect("the lost peer is noticed");
        let after = lost - cut;
        // RFC 7675 §5.1: consent expires 30 s after the last response
        assert!(after >= Duration::from_secs(2), "{after:?}");
        assert!(after <= Duration::from_secs(40), "{after:?}");
        assert!(sim.a.is_ended());
        assert_eq!(sim.a.poll_timeout(), None);
    }

    #[test]
    fn a_peer_that_closes_its_connection_is_reported_at_once() {
        let (mut sim, _) = Sim::new(Box::new(Silence), Conditions::default());
        sim.run_for(Duration::from_secs(2));
        let now = sim.now;
        sim.b.close(now);
        assert!(sim.b.is_ended());
        let closed = sim.now;
        sim.run_for(Duration::from_secs(1));
        let at = Sim::when(&sim.a_events, &WebRtcEvent::PeerClosed).expect("A hears the close");
        assert!(
            at - closed < Duration::from_millis(100),
            "{:?}",
            at - closed
        );
        assert!(sim.a.is_ended());
        // DTMF queued on an ended call goes nowhere, and nothing panics
        sim.a.send_dtmf("123");
        sim.a.handle_timeout(sim.now + Duration::from_secs(1));
    }
}
