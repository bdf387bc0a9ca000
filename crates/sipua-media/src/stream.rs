//! One RTP audio stream as a plain state machine (sans-IO): RTP packetisation and playout
//! (RFC 3550 §5, G.711 per RFC 3551 §4.5.14), RTCP sender and receiver reports with jitter,
//! loss and round-trip time (RFC 3550 §6.4), and RFC 4733 DTMF in both directions. RTCP
//! may share the RTP port (RFC 5761: told apart by its packet type, §4; sent from the RTP
//! socket when negotiated).
//!
//! The stream never reads a clock or touches a socket. Its driver feeds it packets
//! ([`AudioStream::handle_rtp`], [`AudioStream::handle_rtcp`]) and the time
//! ([`AudioStream::handle_timeout`] at [`AudioStream::poll_timeout`]), then sends what
//! [`AudioStream::poll_transmit`] gives and passes on what [`AudioStream::poll_event`] gives.
//! Every 20 ms tick sends one frame read from the [`AudioSource`] (or a DTMF packet while
//! digits are playing) and writes one frame to the [`AudioSink`] from the jitter buffer (the
//! last frame faded for a lost packet, silence when nothing came), so a recording keeps wall
//! time.
//!
//! One concern in one file (about 950 lines of code, its tests after): one stream's RTP, RTCP
//! and DTMF timing, which share one clock and one sequence space.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::audio::{AudioSink, AudioSource};
use crate::codec::MediaCodec;
use crate::dtmf::{DtmfReceiver, DtmfSender};
use crate::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::rtp::rtcp::{self, ReportBlock, RtcpPacket};
use crate::rtp::stats::ReceiverStats;
use crate::rtp::{is_rtcp, RtpPacket};
use crate::sdp::offer_answer::Negotiated;
use crate::sdp::Direction;

/// The clock of telephone-event durations (`telephone-event/8000`, the rate we offer).
const TELEPHONE_EVENT_CLOCK: u32 = 8000;
/// The packet time, both ways.
const FRAME: Duration = Duration::from_millis(20);
/// Most transmits or events waiting to be drained; older ones are dropped beyond it.
const QUEUE_LIMIT: usize = 256;
/// RTCP report interval (RFC 3550 §6.2: 5 s minimum, randomised by 0.5–1.5).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// A driver that fell this far behind skips ahead instead of sending a burst.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);

/// What a stream is set up with, beyond what offer/answer decided.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Our synchronisation source (random per stream, RFC 3550 §8).
    pub ssrc: u32,
    /// Our canonical name in RTCP SDES (RFC 3550 §6.5.1).
    pub cname: String,
    /// The first RTP sequence number (random, RFC 3550 §5.1).
    pub initial_sequence: u16,
    /// The first RTP timestamp (random, RFC 3550 §5.1).
    pub initial_timestamp: u32,
    /// The jitter buffer's settings.
    pub jitter: JitterConfig,
    /// Wall-clock time at the stream's start instant, as time since the Unix epoch, for the
    /// NTP timestamps of sender reports (passed in: the stream reads no clock).
    pub wallclock: Duration,
    /// Seed for the randomised RTCP interval.
    pub seed: u64,
    /// Whether the peer's address may be sent to at once. `false` for an answerer: the
    /// address came in an offer anyone could have sent (a spoofed INVITE would make us an
    /// RTP reflector), so nothing goes there until signalling confirms the call
    /// ([`AudioStream::confirm`], on the ACK) or RTP comes from the peer (symmetric RTP).
    pub verified: bool,
    /// How long we send at full rate while nothing (RTP or RTCP) arrives from the peer; past
    /// it, one packet a second until the peer is heard again ([`MediaEvent::PeerSilent`]). A
    /// confirmed call to an address that never answers (a dead peer, or a spoofed INVITE and
    /// ACK naming a victim) then gets a trickle, not 50 packets a second. `None`: no cap.
    pub silent_peer_limit: Option<Duration>,
    /// The sample rate of the source's and the sink's frames (one of
    /// [`crate::resample::AUDIO_RATES`]; 8 kHz is narrowband).
    pub audio_rate: u32,
    /// Opus encoder complexity (see [`crate::codec::CodecSettings`]).
    pub opus_complexity: Option<u8>,
}

/// The rate cap's default for [`StreamConfig::silent_peer_limit`]: long enough for any peer
/// that sends media or RTCP reports (every 5 s, RFC 3550 §6.2) to be heard.
pub const SILENT_PEER_LIMIT: Duration = Duration::from_secs(12);

/// How often a stream capped by [`StreamConfig::silent_peer_limit`] still sends a packet
/// (which keeps a NAT binding open and lets a peer that only listens be heard again).
const SILENT_PEER_INTERVAL: Duration = Duration::from_secs(1);

/// Something the application may want to know about the stream.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// A DTMF digit arrived as an RFC 4733 telephone-event.
    Dtmf {
        /// `0-9`, `*`, `#` or `A-D`.
        digit: char,
        /// How long the key was held, in milliseconds.
        duration_ms: u32,
    },
    /// The peer's RTP comes from another address than its SDP announced; we now send there
    /// (symmetric RTP, RFC 4961, as NATs require).
    RemoteAddressChanged(SocketAddr),
    /// The audio source has played to its end (silence is sent from now on).
    SourceEnded,
    /// The peer said goodbye in RTCP (BYE).
    RemoteBye,
    /// Nothing has arrived from the peer for [`StreamConfig::silent_peer_limit`]: we send one
    /// packet a second until it is heard again (an application may hang up, as an RTP timeout).
    PeerSilent,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub destination: SocketAddr,
    /// Whether it goes out of the RTCP socket: RTCP, unless multiplexed on the RTP port
    /// ([`Negotiated::rtcp_mux`], RFC 5761), which sends it from the RTP socket.
    pub rtcp: bool,
    /// The packet.
    pub payload: Vec<u8>,
}

/// What the peer says about our stream in its RTCP reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteReport {
    /// The fraction of our packets it lost in the last interval, 0.0–1.0.
    pub fraction_lost: f32,
    /// How many of our packets it lost in all.
    pub cumulative_lost: i64,
    /// The interarrival jitter it measures on our stream, in milliseconds.
    pub jitter_ms: f32,
    /// The round-trip time derived from its report (RFC 3550 §6.4.1), when it had our SR.
    pub rtt_ms: Option<f32>,
}

/// Counters of one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    /// The codec in use, e.g. `PCMU`.
    pub codec: String,
    /// Where we send RTP.
    pub remote: Option<SocketAddr>,
    /// RTP packets sent (audio and DTMF).
    pub packets_sent: u64,
    /// RTP payload bytes sent.
    pub octets_sent: u64,
    /// RTP packets received from the peer (audio and DTMF).
    pub packets_received: u64,
    /// RTP payload bytes received.
    pub octets_received: u64,
    /// Packets the peer sent that never arrived (RFC 3550 A.3: expected minus received).
    pub packets_lost: i64,
    /// `packets_lost` over the expected count, 0.0–1.0.
    pub loss_fraction: f32,
    /// Interarrival jitter of the peer's stream, in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f32,
    /// Packets that came too late for their playout time, or twice.
    pub discarded: u64,
    /// Frames played out while a packet was missing (concealed).
    pub concealed_frames: u64,
    /// Datagrams that were not RTP or RTCP we could use.
    pub invalid: u64,
    /// DTMF digits sent and received.
    pub dtmf_sent: u64,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// What the peer reports about our stream.
    pub remote_report: Option<RemoteReport>,
    /// RTCP packets sent and received.
    pub rtcp_sent: u64,
    /// RTCP compound packets received.
    pub rtcp_received: u64,
    /// How the media is encrypted: the SDES suite (`AES_CM_128_HMAC_SHA1_80`), `DTLS-SRTP`
    /// for WebRTC, or `None` for plain RTP.
    pub srtp: Option<&'static str>,
    /// SRTP or SRTCP packets refused: a tag that does not match (the wrong key, or forged),
    /// a replay, or a packet too old.
    pub srtp_rejected: u64,
    /// Whether RTCP shares the RTP port (RFC 5761), as negotiated.
    pub rtcp_mux: bool,
}

/// How the stream's codecs run.
fn codec_settings(config: &StreamConfig) -> crate::codec::CodecSettings {
    crate::codec::CodecSettings {
        audio_rate: config.audio_rate,
        opus_complexity: config.opus_complexity,
    }
}

/// The jitter buffer for `codec`: its packets are 20 ms in the codec's RTP clock.
fn jitter_for(config: &JitterConfig, codec: &MediaCodec) -> JitterBuffer {
    JitterBuffer::new(JitterConfig {
        frame_samples: codec.timestamp_step(),
        clock_rate: codec.clock_rate(),
        ..*config
    })
}

/// The stream's SRTP contexts, when SDES agreed keys (RFC 4568, RFC 3711).
#[cfg(feature = "srtp")]
struct Crypto {
    keys: crate::sdp::offer_answer::SdesKeys,
    /// Ours, for what we send.
    tx: crate::srtp::SrtpContext,
    /// The peer's, for what arrives.
    rx: crate::srtp::SrtpContext,
}

#[cfg(feature = "srtp")]
impl Crypto {
    /// The contexts for what offer/answer decided; `None` for plain RTP.
    fn for_params(params: &Negotiated) -> Result<Option<Box<Crypto>>, String> {
        use crate::srtp::{MasterKey, SrtpContext, SrtpSuite};
        let Some(keys) = &params.srtp else {
            return Ok(None);
        };
        let suite = SrtpSuite::from_name(keys.suite)
            .ok_or_else(|| format!("SRTP suite {} is not supported", keys.suite))?;
        let context = |k: &[u8; crate::srtp::MASTER_LEN]| {
            SrtpContext::new(suite, &MasterKey(*k)).map_err(|e| e.to_string())
        };
        Ok(Some(Box::new(Crypto {
            tx: context(&keys.local_key)?,
            rx: context(&keys.remote_key)?,
            keys: keys.clone(),
        })))
    }

    fn suite(&self) -> &'static str {
        self.keys.suite
    }

    /// Whether these are the contexts for `params` already (a re-INVITE keeps its keys).
    fn matches(&self, params: &Negotiated) -> bool {
        params.srtp.as_ref() == Some(&self.keys)
    }

    /// Encrypts an outgoing packet; false when it cannot be sent.
    fn protect(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> bool {
        if rtcp {
            self.tx.protect_rtcp(packet).is_ok()
        } else {
            self.tx.protect_rtp(packet).is_ok()
        }
    }

    /// Checks and decrypts an incoming packet.
    fn unprotect(&mut self, packet: &mut Vec<u8>, rtcp: bool) -> Unprotected {
        let r = if rtcp {
            self.rx.unprotect_rtcp(packet)
        } else {
            self.rx.unprotect_rtp(packet)
        };
        match r {
            Ok(()) => Unprotected::Ok,
            // not SRTP at all (a peer's plain keep-alive, say): just not usable
            Err(crate::srtp::SrtpError::TooShort) => Unprotected::Invalid,
            Err(_) => Unprotected::Refused,
        }
    }
}

/// Never made without the `srtp` feature: a negotiation with keys fails instead.
#[cfg(not(feature = "srtp"))]
struct Crypto;

#[cfg(not(feature = "srtp"))]
impl Crypto {
    fn for_params(params: &Negotiated) -> Result<Option<Box<Crypto>>, String> {
        match params.srtp {
            None => Ok(None),
            Some(_) => Err("SRTP is not built in (the srtp feature)".into()),
        }
    }

    fn suite(&self) -> &'static str {
        ""
    }

    fn matches(&self, _params: &Negotiated) -> bool {
        false
    }

    fn protect(&mut self, _packet: &mut Vec<u8>, _rtcp: bool) -> bool {
        false
    }

    fn unprotect(&mut self, _packet: &mut Vec<u8>, _rtcp: bool) -> Unprotected {
        Unprotected::Refused
    }
}

/// What became of an incoming packet of an encrypted stream.
#[cfg_attr(not(feature = "srtp"), allow(dead_code))]
enum Unprotected {
    /// Authentic and decrypted.
    Ok,
    /// Too short to be SRTP or SRTCP: counted as invalid.
    Invalid,
    /// Forged, replayed or too old: counted in `srtp_rejected`.
    Refused,
}

/// One RTP audio stream (see the module documentation).
pub struct AudioStream {
    config: StreamConfig,
    params: Negotiated,
    codec: MediaCodec,
    /// Where RTP goes: the SDP's address, until the peer's packets come from elsewhere.
    remote_rtp: SocketAddr,
    remote_rtcp: SocketAddr,
    /// Whether we already followed the peer's RTP to another address (done once).
    latched: bool,
    /// Whether we may send to the peer (see [`StreamConfig::verified`]).
    verified: bool,
    /// When the peer was last heard (RTP or RTCP), or when we began sending to it.
    heard: Option<Instant>,
    /// While capped ([`StreamConfig::silent_peer_limit`]): when the next packet may go.
    capped_until: Option<Instant>,
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
    source_ended: bool,
    start: Instant,
    sequence: u16,
    timestamp: u32,
    next_frame: Instant,
    next_rtcp: Instant,
    rng: u64,
    frame: Vec<i16>,
    encoded: Vec<u8>,
    decoded: Vec<i16>,
    /// The last frame played, for concealing a lost one.
    last_played: Vec<i16>,
    conceal_run: u32,
    jitter: JitterBuffer,
    receiver: Option<ReceiverStats>,
    remote_ssrc: Option<u32>,
    /// The peer's last sender report: its middle NTP bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// Whether we sent RTP since the last report (then we send SR, else RR).
    sent_since_report: bool,
    dtmf_tx: DtmfSender,
    /// The RTP timestamp of the last DTMF event counted as sent.
    dtmf_last_end: u32,
    dtmf_rx: DtmfReceiver,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MediaEvent>,
    stats: MediaStats,
    closed: bool,
    /// SRTP, when the stream is encrypted.
    crypto: Option<Box<Crypto>>,
}

impl std::fmt::Debug for AudioStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioStream")
            .field("remote_rtp", &self.remote_rtp)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl AudioStream {
    /// A stream for what offer/answer decided, starting at `now`. Fails when the negotiated
    /// codec is not one we run (G.711, or Opus with the `opus` feature).
    pub fn new(
        config: StreamConfig,
        params: Negotiated,
        source: Box<dyn AudioSource>,
        sink: Box<dyn AudioSink>,
        now: Instant,
    ) -> Result<AudioStream, String> {
        let codec = MediaCodec::with_settings(&params.codec, codec_settings(&config))?;
        let crypto = Crypto::for_params(&params)?;
        let mut rng = config.seed | 1;
        let first_rtcp = jittered(&mut rng, RTCP_INTERVAL / 2);
        let stats = MediaStats {
            codec: codec.name().into(),
            remote: Some(params.remote_address),
            srtp: crypto.as_ref().map(|c| c.suite()),
            rtcp_mux: params.rtcp_mux,
            ..MediaStats::default()
        };
        Ok(AudioStream {
            jitter: jitter_for(&config.jitter, &codec),
            codec,
            remote_rtp: params.remote_address,
            remote_rtcp: params.remote_rtcp,
            latched: false,
            verified: config.verified,
            heard: None,
            capped_until: None,
            source,
            sink,
            source_ended: false,
            start: now,
            sequence: config.initial_sequence,
            timestamp: config.initial_timestamp,
            next_frame: now,
            next_rtcp: now + first_rtcp,
            rng,
            frame: Vec::new(),
            encoded: Vec::new(),
            decoded: Vec::new(),
            last_played: Vec::new(),
            conceal_run: 0,
            receiver: None,
            remote_ssrc: None,
            last_sr: None,
            sent_since_report: false,
            dtmf_tx: DtmfSender::new(TELEPHONE_EVENT_CLOCK, Duration::from_millis(20)),
            dtmf_last_end: u32::MAX,
            dtmf_rx: DtmfReceiver::new(TELEPHONE_EVENT_CLOCK),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats,
            closed: false,
            crypto,
            params,
            config,
        })
    }

    /// Samples per packet. Frames are 20 ms both ways, the `a=ptime:20` we announce and
    /// the packet time nearly every phone uses; a peer asking for another ptime still gets
    /// 20 ms packets (RFC 4566 makes ptime a hint), and the jitter buffer expects 20 ms.
    fn frame_samples(&self) -> usize {
        self.codec.frame_samples()
    }

    fn frame_duration(&self) -> Duration {
        FRAME
    }

    /// Applies a new negotiation (a re-INVITE: hold, unhold, another address or codec).
    pub fn update(&mut self, params: Negotiated) -> Result<(), String> {
        if !self
            .crypto
            .as_ref()
            .map_or(params.srtp.is_none(), |c| c.matches(&params))
        {
            // new keys (or SRTP on or off): new contexts, and the peer's packets anew
            self.crypto = Crypto::for_params(&params)?;
            self.stats.srtp = self.crypto.as_ref().map(|c| c.suite());
        }
        if !params
            .codec
            .encoding
            .eq_ignore_ascii_case(&self.params.codec.encoding)
        {
            // another codec: a new encoder and decoder, and a jitter buffer for its clock
            self.codec = MediaCodec::with_settings(&params.codec, codec_settings(&self.config))?;
            self.jitter = jitter_for(&self.config.jitter, &self.codec);
            self.receiver = None;
            self.remote_ssrc = None;
        }
        if params.remote_address != self.params.remote_address {
            // a new address in the SDP wins over what we latched
            self.remote_rtp = params.remote_address;
            self.latched = false;
        }
        self.remote_rtcp = match params.rtcp_mux {
            // with the RTP, wherever that was latched
            true => self.remote_rtp,
            false => params.remote_rtcp,
        };
        self.stats.rtcp_mux = params.rtcp_mux;
        self.stats.codec = self.codec.name().into();
        self.stats.remote = Some(self.remote_rtp);
        if params.direction != self.params.direction || params.remote_address != self.remote_rtp {
            // a renegotiated call (unhold, a new address) starts the silence clock anew
            self.heard = None;
            self.capped_until = None;
        }
        self.params = params;
        Ok(())
    }

    /// What offer/answer decided, as last applied.
    pub fn params(&self) -> &Negotiated {
        &self.params
    }

    /// Queues DTMF digits (`0-9*#A-D`, `,` for a pause) as RFC 4733 events; false when the
    /// peer did not accept telephone-event, we are not sending, or a character is invalid.
    pub fn send_dtmf(&mut self, digits: &str) -> bool {
        if self.params.telephone_event.is_none() || !sends(self.params.direction) {
            return false;
        }
        self.dtmf_tx.queue(digits).is_ok()
    }

    /// Signalling confirmed the call (our 2xx was acknowledged): the peer's address may be
    /// sent to (see [`StreamConfig::verified`]).
    pub fn confirm(&mut self) {
        self.verified = true;
    }

    /// A datagram that arrived on the RTP socket (RTP, or RTCP multiplexed per RFC 5761).
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if self.closed {
            return;
        }
        if is_rtcp(bytes) {
            self.handle_rtcp(now, from, bytes);
            return;
        }
        if let Some(crypto) = self.crypto.as_mut() {
            let mut plain = bytes.to_vec();
            match crypto.unprotect(&mut plain, false) {
                Unprotected::Ok => self.rtp_in(now, from, &plain),
                Unprotected::Invalid => self.stats.invalid += 1,
                Unprotected::Refused => self.stats.srtp_rejected += 1,
            }
        } else {
            self.rtp_in(now, from, bytes);
        }
    }

    /// An RTP packet in the clear.
    fn rtp_in(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(packet) = RtpPacket::parse(bytes) else {
            self.stats.invalid += 1;
            return;
        };
        let is_dtmf = Some(packet.payload_type) == self.params.telephone_event;
        if !is_dtmf && packet.payload_type != self.params.codec.payload_type {
            // comfort noise or a codec we did not agree on: not audio we can play
            self.stats.invalid += 1;
            return;
        }
        // the peer speaks from there: sending to it reflects nothing at a stranger
        self.verified = true;
        self.heard_from(now);
        if from != self.remote_rtp && !self.latched {
            self.latched = true;
            self.remote_rtp = from;
            if self.params.rtcp_mux {
                // RTCP rides with the RTP, so it follows it through the NAT too
                self.remote_rtcp = from;
            }
            self.stats.remote = Some(from);
            self.push_event(MediaEvent::RemoteAddressChanged(from));
        }
        if self.remote_ssrc != Some(packet.ssrc) {
            // a new source (the peer restarted or re-INVITEd to another device)
            self.remote_ssrc = Some(packet.ssrc);
            self.receiver = Some(ReceiverStats::new(
                packet.ssrc,
                packet.sequence,
                self.codec.clock_rate(),
            ));
            self.jitter.reset();
        }
        self.stats.packets_received += 1;
        self.stats.octets_received += packet.payload.len() as u64;
        if let Some(r) = self.receiver.as_mut() {
            if is_dtmf {
                r.on_untimed_packet(packet.sequence);
            } else {
                r.on_packet(packet.sequence, packet.timestamp, now);
            }
        }
        if is_dtmf {
            if let Some(d) = self
                .dtmf_rx
                .on_packet(packet.timestamp, packet.payload, now)
            {
                self.stats.dtmf_received += 1;
                self.push_event(MediaEvent::Dtmf {
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                });
            }
            return;
        }
        if receives(self.params.direction) {
            let _ = self
                .jitter
                .push(packet.sequence, packet.timestamp, packet.payload, now);
        }
    }

    /// A datagram that arrived on the RTCP socket.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if self.closed {
            return;
        }
        if let Some(crypto) = self.crypto.as_mut() {
            let mut plain = bytes.to_vec();
            match crypto.unprotect(&mut plain, true) {
                Unprotected::Ok => self.rtcp_in(now, from, &plain),
                Unprotected::Invalid => self.stats.invalid += 1,
                Unprotected::Refused => self.stats.srtp_rejected += 1,
            }
        } else {
            self.rtcp_in(now, from, bytes);
        }
    }

    /// An RTCP compound packet in the clear.
    fn rtcp_in(&mut self, now: Instant, _from: SocketAddr, bytes: &[u8]) {
        let Ok(packets) = rtcp::parse_compound(bytes) else {
            self.stats.invalid += 1;
            return;
        };
        self.stats.rtcp_received += 1;
        self.heard_from(now);
        for p in packets {
            match p {
                RtcpPacket::SenderReport { ntp, reports, .. } => {
                    self.last_sr = Some((rtcp::ntp_middle32(ntp), now));
                    self.remote_report(now, &reports);
                }
                RtcpPacket::ReceiverReport { reports, .. } => self.remote_report(now, &reports),
                RtcpPacket::Bye { ssrcs, .. }
                    if self.remote_ssrc.is_some_and(|s| ssrcs.contains(&s)) =>
                {
                    self.push_event(MediaEvent::RemoteBye);
                }
                _ => {}
            }
        }
    }

    fn remote_report(&mut self, now: Instant, blocks: &[ReportBlock]) {
        let Some(b) = blocks.iter().find(|b| b.ssrc == self.config.ssrc) else {
            return;
        };
        let rtt = rtcp::rtt(self.ntp_middle32(now), b).map(|d| d.as_secs_f32() * 1000.0);
        self.stats.remote_report = Some(RemoteReport {
            fraction_lost: f32::from(b.fraction_lost) / 256.0,
            cumulative_lost: i64::from(b.cumulative_lost),
            jitter_ms: b.jitter as f32 * 1000.0 / self.codec.clock_rate() as f32,
            rtt_ms: rtt,
        });
    }

    fn ntp_middle32(&self, now: Instant) -> u32 {
        rtcp::ntp_middle32(self.ntp(now))
    }

    fn ntp(&self, now: Instant) -> u64 {
        rtcp::ntp_timestamp(self.config.wallclock + now.saturating_duration_since(self.start))
    }

    /// Advances the stream to `now`: sends and plays every frame that is due, and the RTCP
    /// report when its time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let step = self.frame_duration();
        if now.saturating_duration_since(self.next_frame) > MAX_CATCH_UP {
            // the driver stalled: play on from now rather than in a burst
            let behind = now.saturating_duration_since(self.next_frame);
            let frames = (behind.as_micros() / step.as_micros().max(1)) as u32;
            self.timestamp = self
                .timestamp
                .wrapping_add(frames.wrapping_mul(self.codec.timestamp_step()));
            self.next_frame = now;
        }
        while self.next_frame <= now {
            let at = self.next_frame;
            self.tick(at);
            self.next_frame += step;
        }
        if let Some(d) = self.dtmf_rx.handle_timeout(now) {
            self.stats.dtmf_received += 1;
            self.push_event(MediaEvent::Dtmf {
                digit: d.digit,
                duration_ms: d.duration_ms,
            });
        }
        if now >= self.next_rtcp {
            self.send_report(now, false);
            let interval = jittered(&mut self.rng, RTCP_INTERVAL);
            self.next_rtcp = now + interval;
        }
        self.update_stats();
    }

    /// When [`AudioStream::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t = self.next_frame.min(self.next_rtcp);
        if let Some(d) = self.dtmf_rx.poll_timeout() {
            t = t.min(d);
        }
        Some(t)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The counters so far.
    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }

    /// Ends the stream: a last report with BYE (RFC 3550 §6.6), and the sink is finished (a
    /// recording is complete once this returns).
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.send_report(now, true);
        self.sink.finish();
        self.closed = true;
    }

    /// Something came from the peer: the rate cap, if any, is lifted.
    fn heard_from(&mut self, now: Instant) {
        self.heard = Some(now);
        self.capped_until = None;
    }

    /// Whether the rate cap for a silent peer holds this frame back (see
    /// [`StreamConfig::silent_peer_limit`]).
    fn capped(&mut self, at: Instant) -> bool {
        let Some(limit) = self.config.silent_peer_limit else {
            return false;
        };
        let heard = *self.heard.get_or_insert(at); // the clock starts with our first packet
        if at.saturating_duration_since(heard) < limit {
            return false;
        }
        match self.capped_until {
            None => {
                self.push_event(MediaEvent::PeerSilent);
                self.capped_until = Some(at + SILENT_PEER_INTERVAL);
                false
            }
            Some(until) if at >= until => {
                self.capped_until = Some(at + SILENT_PEER_INTERVAL);
                false
            }
            Some(_) => true,
        }
    }

    /// One frame time: send a frame (or DTMF) and play one.
    fn tick(&mut self, at: Instant) {
        let samples = self.frame_samples();
        let sending = sends(self.params.direction) && self.verified && !self.capped(at);
        if sends(self.params.direction) && !self.verified {
            // nothing goes out yet, and nothing of the source is lost meanwhile: a prompt
            // starts from its beginning once the peer is confirmed
            self.timestamp = self.timestamp.wrapping_add(self.codec.timestamp_step());
            self.play(at, samples);
            return;
        }
        if !(sending && !self.dtmf_tx.is_idle() && self.send_dtmf_packet(at)) {
            self.frame.clear();
            self.frame.resize(samples, 0);
            if !self.source_ended && !self.source.read(&mut self.frame) {
                self.source_ended = true;
                self.push_event(MediaEvent::SourceEnded);
            }
            if sending {
                self.encoded.clear();
                self.codec.encode(&self.frame, &mut self.encoded);
                let marker = self.stats.packets_sent == 0;
                let payload = std::mem::take(&mut self.encoded);
                self.send_rtp(
                    self.params.codec.payload_type,
                    marker,
                    self.timestamp,
                    &payload,
                );
                self.encoded = payload;
            }
        }
        self.timestamp = self.timestamp.wrapping_add(self.codec.timestamp_step());
        self.play(at, samples);
    }

    /// Sends the DTMF packet due now instead of audio; false when no digit is playing.
    fn send_dtmf_packet(&mut self, at: Instant) -> bool {
        let Some(pt) = self.params.telephone_event else {
            return false;
        };
        let Some(p) = self.dtmf_tx.next_packet(at, self.timestamp) else {
            return false;
        };
        if p.end && p.timestamp != self.dtmf_last_end {
            // the first of the (repeated) end packets: one digit sent
            self.dtmf_last_end = p.timestamp;
            self.stats.dtmf_sent += 1;
        }
        self.send_rtp(pt, p.marker, p.timestamp, &p.payload);
        true
    }

    fn send_rtp(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) {
        if !self.verified {
            return; // not to an address nobody has vouched for (StreamConfig::verified)
        }
        let packet = RtpPacket {
            marker,
            payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.config.ssrc,
            csrc_count: 0,
            payload,
        };
        let mut out = Vec::with_capacity(12 + payload.len());
        packet.write(&mut out);
        self.sequence = self.sequence.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload.len() as u64;
        self.sent_since_report = true;
        self.push_transmit(
            Transmit {
                destination: self.remote_rtp,
                rtcp: false,
                payload: out,
            },
            false,
        );
    }

    /// Plays one frame out of the jitter buffer into the sink.
    fn play(&mut self, at: Instant, samples: usize) {
        self.decoded.clear();
        match self.jitter.pop(at) {
            Playout::Frame(payload) => {
                self.codec.decode(&payload, &mut self.decoded);
                self.decoded.resize(samples, 0);
                self.conceal_run = 0;
                self.last_played.clear();
                self.last_played.extend_from_slice(&self.decoded);
            }
            Playout::Lost if self.codec.conceal(&mut self.decoded) => {
                // the codec's own concealment (Opus)
                self.stats.concealed_frames += 1;
                self.decoded.resize(samples, 0);
            }
            Playout::Lost => {
                // repeat the last frame, fading out over three frames (a simple concealment)
                self.stats.concealed_frames += 1;
                self.conceal_run += 1;
                let gain = match self.conceal_run {
                    1 => 0.7,
                    2 => 0.4,
                    3 => 0.2,
                    _ => 0.0,
                };
                self.decoded.extend(
                    self.last_played
                        .iter()
                        .map(|&s| (f32::from(s) * gain) as i16),
                );
                self.decoded.resize(samples, 0);
            }
            Playout::Empty => self.decoded.resize(samples, 0),
        }
        // the sink hears silence while nothing arrives, so a recording keeps wall time
        let frame = std::mem::take(&mut self.decoded);
        self.sink.write(&frame);
        self.decoded = frame;
    }

    /// An RTCP compound packet: SR when we sent since the last one, else RR; SDES; BYE.
    fn send_report(&mut self, now: Instant, bye: bool) {
        if !self.verified {
            return;
        }
        let mut blocks = Vec::new();
        if let Some(r) = self.receiver.as_mut() {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => (lsr, now.saturating_duration_since(at)),
                None => (0, Duration::ZERO),
            };
            blocks.push(r.report_block(lsr, dlsr));
        }
        let mut out = Vec::with_capacity(128);
        let first = if self.sent_since_report {
            rtcp::Report::Sender {
                ssrc: self.config.ssrc,
                info: rtcp::SenderInfo {
                    ntp: self.ntp(now),
                    rtp_timestamp: self.timestamp,
                    packet_count: self.stats.packets_sent as u32,
                    octet_count: self.stats.octets_sent as u32,
                },
                reports: &blocks,
            }
        } else {
            rtcp::Report::Receiver {
                ssrc: self.config.ssrc,
                reports: &blocks,
            }
        };
        rtcp::write_compound(&mut out, &first, &self.config.cname, bye.then_some(""));
        self.sent_since_report = false;
        self.stats.rtcp_sent += 1;
        self.push_transmit(
            Transmit {
                destination: self.remote_rtcp,
                rtcp: !self.params.rtcp_mux,
                payload: out,
            },
            true,
        );
    }

    fn update_stats(&mut self) {
        if let Some(r) = self.receiver.as_ref() {
            let expected = r.expected().max(1);
            self.stats.packets_lost = r.cumulative_lost();
            self.stats.loss_fraction = (r.cumulative_lost().max(0) as f64 / expected as f64) as f32;
            self.stats.jitter_ms = r.jitter_ms() as f32;
        }
        self.stats.discarded = self.jitter.late() + self.jitter.duplicates();
    }

    /// Queues a datagram, encrypted first under SRTP: as SRTCP when `is_rtcp`, whichever
    /// socket it leaves by (`t.rtcp` names the socket).
    fn push_transmit(&mut self, mut t: Transmit, is_rtcp: bool) {
        if let Some(crypto) = self.crypto.as_mut() {
            if !crypto.protect(&mut t.payload, is_rtcp) {
                return;
            }
        }
        if self.transmits.len() >= QUEUE_LIMIT {
            self.transmits.pop_front();
        }
        self.transmits.push_back(t);
    }

    fn push_event(&mut self, e: MediaEvent) {
        if self.events.len() >= QUEUE_LIMIT {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}

fn sends(d: Direction) -> bool {
    d.sends()
}

fn receives(d: Direction) -> bool {
    d.receives()
}

/// `base` scaled by a pseudo-random factor in 0.5–1.5 (RFC 3550 §6.3.1), from a xorshift.
fn jittered(rng: &mut u64, base: Duration) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let factor = 0.5 + (*rng % 1000) as f64 / 1000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::analysis;
    use crate::audio::{MemorySink, NullSink, Silence, Tone, WavSource};
    use crate::sdp::offer_answer::Codec;

    const A: &str = "127.0.0.1:20000";
    const B: &str = "127.0.0.1:30000";

    fn negotiated(remote: &str, codec: Codec, direction: Direction) -> Negotiated {
        let remote: SocketAddr = remote.parse().unwrap();
        Negotiated {
            remote_address: remote,
            remote_rtcp: SocketAddr::new(remote.ip(), remote.port() + 1),
            rtcp_mux: false,
            codec,
            telephone_event: Some(101),
            direction,
            ptime: 20,
            remote_ptime: Some(20),
            srtp: None,
        }
    }

    fn config(seed: u64) -> StreamConfig {
        StreamConfig {
            ssrc: 0x1000 + seed as u32,
            cname: format!("test{seed}"),
            initial_sequence: 65500, // wraps during the test
            initial_timestamp: u32::MAX - 1000,
            jitter: JitterConfig::default(),
            wallclock: Duration::from_secs(1_700_000_000),
            seed,
            verified: true,
            silent_peer_limit: Some(SILENT_PEER_LIMIT),
            audio_rate: 8000,
            opus_complexity: None,
        }
    }

    /// Two streams joined by a simulated link with delay, loss and reordering, in virtual
    /// time.
    struct Link {
        a: AudioStream,
        b: AudioStream,
        now: Instant,
        /// (delivery time, to b?, from, datagram)
        flight: Vec<(Instant, bool, SocketAddr, bool, Vec<u8>)>,
        rng: u64,
        loss: f64,
        jitter_ms: u64,
        sent_to_b: usize,
        a_events: Vec<MediaEvent>,
        b_events: Vec<MediaEvent>,
    }

    impl Link {
        fn random(&mut self) -> f64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % 1_000_000) as f64 / 1_000_000.0
        }

        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .chain(self.flight.iter().map(|f| f.0))
                    .min()
                    .unwrap_or(end)
                    .min(end)
                    .max(self.now);
                self.now = next;
                let now = self.now;
                // deliver what is due
                let mut i = 0;
                while i < self.flight.len() {
                    if self.flight[i].0 <= now {
                        let (_, to_b, from, rtcp, bytes) = self.flight.swap_remove(i);
                        let s = if to_b { &mut self.b } else { &mut self.a };
                        if rtcp {
                            s.handle_rtcp(now, from, &bytes);
                        } else {
                            s.handle_rtp(now, from, &bytes);
                        }
                    } else {
                        i += 1;
                    }
                }
                self.a.handle_timeout(now);
                self.b.handle_timeout(now);
                for to_b in [true, false] {
                    loop {
                        let t = if to_b {
                            self.a.poll_transmit()
                        } else {
                            self.b.poll_transmit()
                        };
                        let Some(t) = t else { break };
                        if to_b && !t.rtcp {
                            self.sent_to_b += 1;
                        }
                        if self.random() < self.loss {
                            continue;
                        }
                        let delay = 10 + (self.random() * self.jitter_ms as f64) as u64;
                        let from: SocketAddr = if to_b { A } else { B }.parse().unwrap();
                        let from = if t.rtcp {
                            SocketAddr::new(from.ip(), from.port() + 1)
                        } else {
                            from
                        };
                        self.flight.push((
                            now + Duration::from_millis(delay),
                            to_b,
                            from,
                            t.rtcp,
                            t.payload,
                        ));
                    }
                }
                while let Some(e) = self.a.poll_event() {
                    self.a_events.push(e);
                }
                while let Some(e) = self.b.poll_event() {
                    self.b_events.push(e);
                }
                if self.now == end {
                    break;
                }
            }
        }
    }

    fn link(
        source: Box<dyn AudioSource>,
        codec: Codec,
        loss: f64,
        jitter_ms: u64,
    ) -> (Link, Arc<Mutex<Vec<i16>>>) {
        link_with(
            source,
            negotiated(B, codec.clone(), Direction::SendRecv),
            negotiated(A, codec, Direction::SendRecv),
            loss,
            jitter_ms,
        )
    }

    /// A plays `source` to B under `a` and `b`, what B hears is kept.
    fn link_with(
        source: Box<dyn AudioSource>,
        a: Negotiated,
        b: Negotiated,
        loss: f64,
        jitter_ms: u64,
    ) -> (Link, Arc<Mutex<Vec<i16>>>) {
        let now = Instant::now();
        let (sink, heard) = MemorySink::new(8000 * 60);
        let a = AudioStream::new(config(1), a, source, Box::new(NullSink), now).unwrap();
        let b = AudioStream::new(config(2), b, Box::new(Silence), Box::new(sink), now).unwrap();
        let l = Link {
            a,
            b,
            now,
            flight: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            loss,
            jitter_ms,
            sent_to_b: 0,
            a_events: Vec::new(),
            b_events: Vec::new(),
        };
        (l, heard)
    }

    fn melody() -> Vec<i16> {
        crate::audio::demo_melody()
    }

    /// One PCMU packet of silence from SSRC 77.
    fn pcmu_packet() -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 160,
            ssrc: 77,
            csrc_count: 0,
            payload: &[0xff; 160],
        }
        .write(&mut out);
        out
    }

    /// Runs `s` for `secs` of virtual time from `now`; how many datagrams it sent.
    fn receiver_report() -> Vec<u8> {
        let mut out = Vec::new();
        let rr = rtcp::Report::Receiver {
            ssrc: 77,
            reports: &[],
        };
        rtcp::write_compound(&mut out, &rr, "peer", None);
        out
    }

    fn sent_for(s: &mut AudioStream, now: &mut Instant, secs: u64) -> usize {
        let end = *now + Duration::from_secs(secs);
        let mut sent = 0;
        while *now < end {
            *now += Duration::from_millis(10);
            s.handle_timeout(*now);
            while s.poll_transmit().is_some() {
                sent += 1;
            }
        }
        sent
    }

    #[test]
    fn an_answerer_sends_nothing_to_an_unverified_address() {
        // the offer's address is anyone's until the ACK comes or the peer's RTP does: no
        // reflector for spoofed INVITEs
        for by_rtp in [false, true] {
            let mut now = Instant::now();
            let mut s = AudioStream::new(
                StreamConfig {
                    verified: false,
                    ..config(3)
                },
                negotiated(B, Codec::pcmu(), Direction::SendRecv),
                Box::new(Tone::new(440.0, 8000, 8000)),
                Box::new(NullSink),
                now,
            )
            .unwrap();
            assert_eq!(sent_for(&mut s, &mut now, 10), 0, "nothing, RTCP included");
            assert_eq!(s.stats().packets_sent, 0);
            if by_rtp {
                s.handle_rtp(now, B.parse().unwrap(), &pcmu_packet());
            } else {
                s.confirm();
            }
            let sent = sent_for(&mut s, &mut now, 1);
            assert!(sent >= 45, "{sent} datagrams in the first second after");
        }
    }

    #[test]
    fn a_peer_never_heard_gets_one_packet_a_second_after_the_limit() {
        let mut now = Instant::now();
        let mut s = AudioStream::new(
            config(4),
            negotiated(B, Codec::pcmu(), Direction::SendRecv),
            Box::new(Tone::new(440.0, 8000, 8000)),
            Box::new(NullSink),
            now,
        )
        .unwrap();
        let limit = SILENT_PEER_LIMIT.as_secs();
        let full = sent_for(&mut s, &mut now, limit);
        assert!(
            full as u64 >= 50 * limit - 5,
            "{full} datagrams at full rate"
        );
        // past the limit: a trickle (RTP once a second, plus the odd RTCP report)
        let capped = sent_for(&mut s, &mut now, 30);
        assert!((30..=40).contains(&capped), "{capped} datagrams in 30 s");
        let mut events = std::iter::from_fn(|| s.poll_event());
        assert!(events.any(|e| e == MediaEvent::PeerSilent));
        // the peer speaks: full rate again at once
        s.handle_rtp(now, B.parse().unwrap(), &pcmu_packet());
        let again = sent_for(&mut s, &mut now, 1);
        assert!(again >= 45, "{again} datagrams in the second after");
        // a peer heard now and then (RTCP every 5 s) is never capped
        let mut total = 0;
        for _ in 0..6 {
            total += sent_for(&mut s, &mut now, 5);
            s.handle_rtcp(now, B.parse().unwrap(), &receiver_report());
        }
        assert!(total >= 50 * 30 - 10, "{total} datagrams in 30 s");
    }

    #[test]
    fn audio_sent_one_way_is_heard_on_the_other_side() {
        for codec in [Codec::pcmu(), Codec::pcma()] {
            let sent = melody();
            let (mut l, heard) = link(Box::new(WavSource::new(sent.clone())), codec, 0.0, 0);
            l.run_for(Duration::from_secs(3));
            let heard = heard.lock().unwrap().clone();
            let (lag, corr) = analysis::best_alignment(&sent, &heard, 8000);
            assert!(corr > 0.99, "correlation {corr}");
            // link delay 10 ms plus the 40 ms jitter buffer, give or take a frame
            assert!((300..=800).contains(&lag), "lag {lag} samples");
            assert!(analysis::snr_db(&sent, &heard) > 30.0);
            assert!(l.a_events.contains(&MediaEvent::SourceEnded));
            assert_eq!(l.b.stats().packets_lost, 0);
            // all but what is still on the wire
            assert!(l.b.stats().packets_received + 2 >= l.sent_to_b as u64);
        }
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_carries_audio_on_a_48_khz_clock_and_conceals_loss() {
        let sent = melody();
        let (mut l, heard) = link(
            Box::new(WavSource::new(sent.clone())),
            crate::codec::opus(),
            0.0,
            0,
        );
        l.run_for(Duration::from_secs(3));
        let h = heard.lock().unwrap().clone();
        let (_, corr) = analysis::best_alignment(&sent, &h, 8000);
        assert!(corr > 0.9, "correlation {corr}");
        assert_eq!(l.b.stats().codec, "opus");
        assert_eq!(l.b.stats().packets_lost, 0);
        // timestamps step 960 a packet: jitter stays near zero on a clean link
        assert!(l.b.stats().jitter_ms < 1.0, "{:?}", l.b.stats());
        // with loss the decoder's concealment fills the gaps
        let (mut l, _) = link(
            Box::new(Tone::new(440.0, 8000, 8000)),
            crate::codec::opus(),
            0.05,
            0,
        );
        l.run_for(Duration::from_secs(5));
        assert!(l.b.stats().concealed_frames > 0, "{:?}", l.b.stats());
    }

    #[test]
    fn loss_and_reordering_are_counted_and_concealed() {
        let tone = Tone::new(440.0, 8000, 8000);
        let (mut l, heard) = link(Box::new(tone), Codec::pcmu(), 0.05, 60);
        l.run_for(Duration::from_secs(10));
        let s = l.b.stats().clone();
        // 10 s at 50 packets/s, 5 % lost
        assert!((400..=560).contains(&s.packets_received), "{s:?}");
        assert!(s.loss_fraction > 0.02 && s.loss_fraction < 0.09, "{s:?}");
        assert!(s.jitter_ms > 1.0 && s.jitter_ms < 40.0, "{s:?}");
        assert!(s.concealed_frames > 0, "{s:?}");
        // the tone is still the tone
        let heard = heard.lock().unwrap().clone();
        let tail = &heard[heard.len() - 16000..];
        assert_eq!(
            analysis::dominant_frequency(tail, 8000, &[300.0, 440.0, 1000.0]),
            Some(440.0)
        );
    }

    #[test]
    fn dtmf_digits_arrive_once_each_in_order() {
        let (mut l, _) = link(Box::new(Silence), Codec::pcmu(), 0.0, 0);
        l.run_for(Duration::from_millis(200));
        assert!(l.a.send_dtmf("1#9*"));
        l.run_for(Duration::from_secs(3));
        let digits: String = l
            .b_events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect();
        assert_eq!(digits, "1#9*");
        assert_eq!(l.a.stats().dtmf_sent, 4);
        assert_eq!(l.b.stats().dtmf_received, 4);
        // event packets repeat their timestamp: they must not read as jitter
        assert!(l.b.stats().jitter_ms < 1.0, "{:?}", l.b.stats());
    }

    #[test]
    fn dtmf_survives_a_lossy_link() {
        let (mut l, _) = link(Box::new(Silence), Codec::pcmu(), 0.1, 30);
        l.run_for(Duration::from_millis(200));
        assert!(l.a.send_dtmf("0123456789"));
        l.run_for(Duration::from_secs(6));
        let digits: String = l
            .b_events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect();
        assert_eq!(digits, "0123456789");
    }

    #[test]
    fn rtcp_reports_give_the_peer_our_loss_and_a_round_trip_time() {
        let (mut l, _) = link(Box::new(Silence), Codec::pcma(), 0.1, 0);
        l.run_for(Duration::from_secs(20));
        let report = l.a.stats().remote_report.expect("a report from b");
        assert!(report.fraction_lost < 0.3, "{report:?}");
        assert!(report.cumulative_lost > 0, "{report:?}");
        let rtt = report.rtt_ms.expect("b had our sender report");
        // 10 ms each way on this link
        assert!((15.0..=30.0).contains(&rtt), "rtt {rtt}");
        assert!(l.a.stats().rtcp_sent >= 2 && l.b.stats().rtcp_received >= 1);
    }

    /// [`negotiated`] with RTCP multiplexed on the peer's RTP port (RFC 5761).
    fn muxed(remote: &str) -> Negotiated {
        let n = negotiated(remote, Codec::pcmu(), Direction::SendRecv);
        Negotiated {
            remote_rtcp: n.remote_address,
            rtcp_mux: true,
            ..n
        }
    }

    #[test]
    fn multiplexed_rtcp_leaves_by_the_rtp_socket_for_the_peers_rtp_address_and_follows_a_latch() {
        let start = Instant::now();
        let mut s = AudioStream::new(
            config(1),
            muxed(B),
            Box::new(Silence),
            Box::new(NullSink),
            start,
        )
        .unwrap();
        s.confirm();
        // the peer's RTP comes from another address (a NAT on its side): we latch onto it,
        // and the RTCP must go there too, since it shares the port
        let nat: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        s.handle_rtp(start, nat, &pcmu_packet());
        let mut now = start;
        let (mut reports, mut audio) = (Vec::new(), 0);
        while now < start + Duration::from_secs(12) {
            now += Duration::from_millis(10);
            s.handle_timeout(now);
            // the peer keeps talking, so we keep sending at full rate
            s.handle_rtp(now, nat, &pcmu_packet());
            while let Some(t) = s.poll_transmit() {
                if is_rtcp(&t.payload) {
                    reports.push(t);
                } else {
                    assert!(!t.rtcp && t.destination == nat, "{t:?}");
                    audio += 1;
                }
            }
        }
        assert!(
            audio > 500 && reports.len() >= 2,
            "{audio} {}",
            reports.len()
        );
        for t in &reports {
            assert!(!t.rtcp, "RTCP from the RTCP socket: {t:?}");
            assert_eq!(t.destination, nat);
        }
        assert!(s.stats().rtcp_mux);
        // a re-negotiation that keeps the address keeps the latch for both
        s.update(muxed(B)).unwrap();
        assert_eq!(s.remote_rtcp, nat);
    }

    #[test]
    fn multiplexed_rtcp_still_gives_both_sides_reports_and_a_round_trip_time() {
        let (mut l, _) = link_with(Box::new(Silence), muxed(B), muxed(A), 0.0, 0);
        l.run_for(Duration::from_secs(20));
        for (side, s) in [("a", &l.a), ("b", &l.b)] {
            let stats = s.stats();
            assert!(stats.rtcp_received >= 2, "{side}: {stats:?}");
            assert_eq!(stats.invalid, 0, "{side}: RTCP taken for RTP: {stats:?}");
            let rtt = stats.remote_report.and_then(|r| r.rtt_ms).expect("an rtt");
            assert!((15.0..=30.0).contains(&rtt), "{side}: rtt {rtt}");
        }
    }

    #[test]
    fn a_stream_on_hold_sends_nothing_and_resumes_on_unhold() {
        let (mut l, _) = link(Box::new(Silence), Codec::pcmu(), 0.0, 0);
        l.run_for(Duration::from_secs(1));
        let before = l.a.stats().packets_sent;
        assert!(before >= 49);
        // b holds: a is told recvonly
        l.a.update(negotiated(B, Codec::pcmu(), Direction::RecvOnly))
            .unwrap();
        l.run_for(Duration::from_secs(1));
        assert_eq!(l.a.stats().packets_sent, before);
        assert!(!l.a.send_dtmf("1"), "no DTMF while not sending");
        l.a.update(negotiated(B, Codec::pcmu(), Direction::SendRecv))
            .unwrap();
        l.run_for(Duration::from_secs(1));
        assert!(l.a.stats().packets_sent >= before + 49);
    }

    #[test]
    fn rtp_from_another_address_is_followed_once() {
        let (mut l, _) = link(Box::new(Silence), Codec::pcmu(), 0.0, 0);
        // b's SDP said 127.0.0.1:30000 but its packets come from a NAT's address
        let nat: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let out = pcmu_packet();
        l.a.handle_rtp(l.now, nat, &out);
        assert_eq!(
            l.a.poll_event(),
            Some(MediaEvent::RemoteAddressChanged(nat))
        );
        l.a.handle_timeout(l.now + Duration::from_millis(20));
        let t = l.a.poll_transmit().unwrap();
        assert_eq!(t.destination, nat);
        // garbage and foreign payload types are counted, not played
        l.a.handle_rtp(l.now, nat, b"\x00\x01");
        assert_eq!(l.a.stats().invalid, 1);
    }

    #[test]
    fn a_codec_we_do_not_run_is_refused() {
        let now = Instant::now();
        let r = AudioStream::new(
            config(1),
            negotiated(B, Codec::new(9, "G722", 8000), Direction::SendRecv),
            Box::new(Silence),
            Box::new(NullSink),
            now,
        );
        assert!(r.is_err());
    }

    #[cfg(feature = "srtp")]
    #[test]
    fn an_srtp_stream_carries_audio_over_a_lossy_link_and_refuses_a_strangers_packets() {
        use crate::sdp::offer_answer::SdesKeys;
        for suite in crate::sdp::crypto::SUITES {
            let (ka, kb) = ([1u8; 30], [2u8; 30]);
            let keys = |local, remote| SdesKeys {
                suite,
                local_key: local,
                remote_key: remote,
            };
            let sent = melody();
            let (mut l, heard) = link_with(
                Box::new(WavSource::new(sent.clone())),
                Negotiated {
                    srtp: Some(keys(ka, kb)),
                    ..negotiated(B, Codec::pcmu(), Direction::SendRecv)
                },
                Negotiated {
                    srtp: Some(keys(kb, ka)),
                    ..negotiated(A, Codec::pcmu(), Direction::SendRecv)
                },
                0.02,
                30,
            );
            l.run_for(Duration::from_secs(8));
            let heard = heard.lock().unwrap().clone();
            let (_, corr) = analysis::best_alignment(&sent, &heard, 8000);
            assert!(corr > 0.9, "{suite}: correlation {corr}");
            let (sa, sb) = (l.a.stats().clone(), l.b.stats().clone());
            assert_eq!((sa.srtp, sb.srtp), (Some(suite), Some(suite)));
            assert_eq!((sa.srtp_rejected, sb.srtp_rejected), (0, 0));
            assert!(
                sb.rtcp_received > 0 && sa.rtcp_received > 0,
                "SRTCP both ways"
            );
            // what goes on the wire is not the audio: a plain stream cannot read it
            let t = std::iter::from_fn(|| {
                l.now += Duration::from_millis(20);
                l.a.handle_timeout(l.now);
                l.a.poll_transmit()
            })
            .find(|t| !t.rtcp)
            .unwrap();
            let tag = if suite.ends_with("80") { 10 } else { 4 };
            assert_eq!(t.payload.len(), 12 + 160 + tag, "{suite}");
            // A's key reads it, once told the sequence wrapped (A started at 65 500)
            use crate::srtp::{MasterKey, SrtpContext, SrtpSuite};
            let srtp_suite = SrtpSuite::from_name(suite).unwrap();
            let mut reader = SrtpContext::new(srtp_suite, &MasterKey(ka)).unwrap();
            let mut before_wrap = pcmu_packet();
            before_wrap[2..4].copy_from_slice(&65_535u16.to_be_bytes());
            before_wrap[8..12].copy_from_slice(&t.payload[8..12]);
            let mut writer = SrtpContext::new(srtp_suite, &MasterKey(ka)).unwrap();
            writer.protect_rtp(&mut before_wrap).unwrap();
            reader.unprotect_rtp(&mut before_wrap).unwrap();
            let mut plain = t.payload.clone();
            reader.unprotect_rtp(&mut plain).unwrap();
            assert_ne!(plain[12..], t.payload[12..12 + 160], "{suite}: encrypted");
            // a stranger's packets (plain RTP, or SRTP under another key) are refused
            let before = l.b.stats().packets_received;
            l.b.handle_rtp(l.now, A.parse().unwrap(), &pcmu_packet());
            l.b.handle_rtcp(l.now, A.parse().unwrap(), &receiver_report());
            assert_eq!(l.b.stats().srtp_rejected, 2);
            assert_eq!(l.b.stats().packets_received, before);
            // the same packet twice is a replay
            l.b.handle_rtp(l.now, A.parse().unwrap(), &t.payload);
            l.b.handle_rtp(l.now, A.parse().unwrap(), &t.payload);
            assert_eq!(l.b.stats().srtp_rejected, 3);
        }
    }

    #[test]
    fn a_negotiation_with_keys_fails_without_srtp_and_rekeys_on_update() {
        use crate::sdp::offer_answer::SdesKeys;
        let keyed = Negotiated {
            srtp: Some(SdesKeys {
                suite: "AES_CM_128_HMAC_SHA1_80",
                local_key: [3; 30],
                remote_key: [4; 30],
            }),
            ..negotiated(B, Codec::pcmu(), Direction::SendRecv)
        };
        let made = AudioStream::new(
            config(6),
            keyed.clone(),
            Box::new(Silence),
            Box::new(NullSink),
            Instant::now(),
        );
        if cfg!(feature = "srtp") {
            let mut s = made.unwrap();
            assert_eq!(s.stats().srtp, Some("AES_CM_128_HMAC_SHA1_80"));
            // a re-INVITE to plain RTP turns it off
            s.update(negotiated(B, Codec::pcmu(), Direction::SendRecv))
                .unwrap();
            assert_eq!(s.stats().srtp, None);
            s.update(keyed).unwrap();
            assert_eq!(s.stats().srtp, Some("AES_CM_128_HMAC_SHA1_80"));
        } else {
            let e = made.unwrap_err();
            assert!(e.contains("srtp"), "{e}");
        }
    }
}
